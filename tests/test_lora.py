"""LoRA students and teachers (training.finetune: lora; sekd.train.lora): only the adapter trains,
the saved model is the base with the adapter merged (W0 + alpha/r · B A), in one process, after a
resume and on two ZeRO-3 ranks; the plan names LoRA runs and sizes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAINING, stop_at, tiny_job
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.plan.variants import make_variant
from sekd.train import checkpoints
from sekd.train import job as train
from sekd.train.distributed import PreemptedError

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "config" / "deepspeed" / "zero3_fp32_cpu.json"
LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}
TRAINING = {**TINY_TRAINING, "learning_rate": 1e-2}
KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4}
RTOL = 1e-4  # ZeRO-3 on two ranks against one process: tests/test_deepspeed.py's bound


@pytest.fixture(scope="module")
def files(tiny_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-data")
    data.write_jsonl(tiny_records * 2, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    return root


def _sft(files, base, out, **fields):
    return tiny_job(
        out,
        base,
        files / "train.jsonl",
        valid_file=files / "valid.jsonl",
        training=TRAINING,
        lora=LORA,
        **fields,
    )


def _kd(files, base, teacher, out, **training):
    return tiny_job(
        out,
        base,
        files / "train.jsonl",
        variant=make_variant("sekd", KD, {"finetune": "lora"}),
        teacher=teacher,
        training={**TRAINING, "select_best_sft": False, **training},
        lora=LORA,
        threads=1,
    )


def _weights(path) -> dict:
    return load_file(str(Path(path) / "model.safetensors"))


def _merged_from_adapter(base: dict, out: Path) -> dict:
    """The merge written out by hand: W0 + (alpha/r)·B A on every adapted module."""
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    scale = LORA["alpha"] / LORA["rank"]
    merged = dict(base)
    for key, a in adapter.items():
        if ".lora_A." not in key:
            continue
        b = adapter[key.replace(".lora_A.", ".lora_B.")]
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        merged[name] = base[name] + scale * (b @ a)
    return merged


@pytest.fixture(scope="module")
def sft_lora(files, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-sft") / "student"
    return out, train.run(_sft(files, tiny_model_dir, out))


def test_lora_sft_trains_only_the_adapter_and_saves_it_merged(sft_lora, tiny_model_dir):
    out, summary = sft_lora
    base, saved = _weights(tiny_model_dir), _weights(out)
    assert saved.keys() == base.keys()  # a plain model: no adapter keys in the merged weights
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert set(config["target_modules"]) == set(LORA["target_modules"])
    expected = _merged_from_adapter(base, out)
    adapted = {k for k in base if not torch.equal(expected[k], base[k])}
    # the adapter trained (B starts at 0) on exactly the target modules of the one layer
    assert {k.rsplit(".", 2)[-2] for k in adapted} == set(LORA["target_modules"])
    for k in base:
        torch.testing.assert_close(saved[k], expected[k], rtol=1e-6, atol=1e-6)
        if k not in adapted:
            assert torch.equal(saved[k], base[k])  # frozen: embeddings, norms, other projections
    h, i = 32, 64  # tiny_model_dir: one layer
    per_layer = 4 * ((h + h) + (h + h) + (i + h))  # r·(in + out) of q_proj, v_proj, down_proj
    lora = summary["lora"]
    assert lora["trainable"] == per_layer
    assert lora["total"] == sum(v.numel() for v in base.values()) + per_layer
    assert json.loads((out / "train_summary.json").read_text())["lora"]["rank"] == 4
    assert any("eval_loss" in e for e in summary["log_history"])  # best checkpoint selection ran


def test_lora_kd_trains_the_adapter_of_the_student(sft_lora, files, tiny_model_dir, tmp_path):
    """A KD run with the option finetune.lora: the student's adapter learns from the (here LoRA
    SFT'd, merged) teacher, which loads as any model."""
    teacher, _ = sft_lora
    out = tmp_path / "kd"
    summary = train.run(_kd(files, tiny_model_dir, teacher, out))
    assert summary["variant"] == "sekd-lam0.5-beta0.5-gamma0.4-finetune.lora"
    base = _weights(tiny_model_dir)
    for k, v in _merged_from_adapter(base, out).items():
        torch.testing.assert_close(_weights(out)[k], v, rtol=1e-6, atol=1e-6)
    assert any(e.get("hard_fraction") is not None for e in summary["log_history"])


def test_a_signalled_lora_run_resumes_to_the_same_adapter(
    sft_lora, files, tiny_model_dir, tmp_path, monkeypatch
):
    teacher, _ = sft_lora
    reference = train.run(_kd(files, tiny_model_dir, teacher, tmp_path / "reference"))
    job = _kd(files, tiny_model_dir, teacher, tmp_path / "stopped")
    stop_at(monkeypatch, 5)
    with pytest.raises(PreemptedError):
        train.run(job)
    monkeypatch.undo()
    assert [p.name for p in checkpoints.completed(Path(job.checkpoint_dir))] == ["checkpoint-5"]
    resumed = train.run(job)
    losses = [(e["step"], e["loss"]) for e in resumed["log_history"] if "loss" in e]
    assert losses == [(e["step"], e["loss"]) for e in reference["log_history"] if "loss" in e]
    a, b = _weights(tmp_path / "reference"), _weights(job.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_target_module_names_the_key_and_the_models_modules(
    files, tiny_model_dir, tmp_path
):
    job = _sft(files, tiny_model_dir, tmp_path / "x", model_key="models.student")
    job.lora = {**LORA, "target_modules": ["query_key_value"]}
    with pytest.raises(ValueError, match=r"models\.student\.lora\.target_modules=.*down_proj"):
        train.run(job)
    assert not (tmp_path / "x").exists()


@pytest.mark.deepspeed
@pytest.mark.slow
def test_lora_kd_on_two_zero3_ranks_matches_one_process(sft_lora, files, tiny_model_dir, tmp_path):
    """The adapter under ZeRO-3 (two CPU ranks, the same global batch): partitioned, gathered
    for the save, merged by rank 0, equal to the one-process run to test_deepspeed.py's bound."""
    teacher, _ = sft_lora
    single = train.run(_kd(files, tiny_model_dir, teacher, tmp_path / "single"))
    zero3 = train.run(
        _kd(
            files,
            tiny_model_dir,
            teacher,
            tmp_path / "zero3",
            deepspeed=str(CPU_CONFIG),
            nproc_per_node=2,
        )
    )
    assert zero3["devices"]["world_size"] == 2
    assert zero3["lora"]["trainable"] == single["lora"]["trainable"]
    one = [e["loss"] for e in single["log_history"] if "loss" in e]
    two = [e["loss"] for e in zero3["log_history"] if "loss" in e]
    assert two == pytest.approx(one, abs=1.01e-4)
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "zero3")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=1e-6)
    adapters = [
        load_file(str(tmp_path / name / "adapter" / "adapter_model.safetensors"))
        for name in ("single", "zero3")
    ]
    assert adapters[0].keys() == adapters[1].keys()
    for k in adapters[0]:
        torch.testing.assert_close(adapters[1][k], adapters[0][k], rtol=RTOL, atol=1e-6)


# --- the plan: which jobs train an adapter, their names and params, their GPUs -----------------


def _paper(**training):
    from sekd.plan.config import load_config, validate_config

    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")
    config["training"].update(training)
    return validate_config(config, environ={})


def test_only_lora_jobs_carry_the_adapter_and_full_jobs_keep_their_params():
    from sekd.plan.jobs import Jobs
    from sekd.plan.study import kd_run

    full, lora = Jobs(_paper()), Jobs(_paper(finetune="lora"))
    for job in (full.sft("teacher"), full.kd("teacher", "forward_kd-lam0.5", 1)):
        assert "lora" not in job and "finetune" not in job["training"]
    assert lora.sft("teacher")["lora"] == lora.config["models"]["teacher"]["lora"]
    assert lora.sft("student")["lora"]["target_modules"][-1] == "down_proj"
    # a KD run says in its name that it trains an adapter, and reads the student's settings
    run = kd_run(lora.config, "forward_kd", "teacher", None)
    assert run == "kd/teacher/forward_kd-lam0.5-finetune.lora"
    assert lora.kd("teacher", run.split("/")[-1], 1)["lora"]["rank"] == 16
    assert kd_run(full.config, "forward_kd", "teacher", None) == "kd/teacher/forward_kd-lam0.5"


def test_a_lora_job_is_sized_for_its_adapter():
    """The paper's 7B student: full fine-tuning's 18 bytes a parameter against the frozen bf16
    base plus the adapter's states; the adapter's parameters are r·(in + out) per module."""
    from types import SimpleNamespace

    from sekd.plan import allocation, sizing

    arch = sizing.KNOWN_ARCHS["huggyllama/llama-7b"]
    per_layer = 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    assert arch.lora_params(16, LORA_ALL) == 32 * per_layer
    cluster = allocation.Cluster(gpu_mem_gb=80, gpus_per_node=8, gpu_tflops=312)
    wc = SimpleNamespace(teacher="teacher", variant="forward_kd-lam0.5", model="student")
    full = allocation.plan_request(_paper(), cluster, "kd", wc)
    wc_lora = SimpleNamespace(**{**vars(wc), "variant": "forward_kd-lam0.5-finetune.lora"})
    lora = allocation.plan_request(_paper(finetune="lora"), cluster, "kd", wc_lora)
    assert "LoRA r=16" in lora.label and lora.gpus <= full.gpus
    one_gpu_full = sizing.training_estimate(arch, 1, 4, 512, 1e8, peak_tflops=312)
    one_gpu_lora = sizing.training_estimate(
        arch, 1, 4, 512, 1e8, peak_tflops=312, lora_params=32 * per_layer
    )
    assert one_gpu_lora.weights == 2 * arch.params() + 18 * 32 * per_layer
    assert one_gpu_lora.weights < one_gpu_full.weights / 6
    assert one_gpu_lora.gpu_hours < one_gpu_full.gpu_hours * 0.7
    with pytest.raises(ValueError, match="query_key_value"):
        arch.lora_params(16, ["query_key_value"])
    bad = _paper(finetune="lora")
    bad["models"]["student"]["lora"]["target_modules"] = ["query_key_value"]
    with pytest.raises(sizing.SizingError, match=r"models\.student\.lora\.target_modules"):
        allocation.plan_request(bad, cluster, "sft", SimpleNamespace(model="student"))


LORA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --- training.report_to: curves where users look (the same module: a training run's outputs) --


def test_report_to_writes_each_trackers_curves_offline_under_the_runs_log_folder(
    files, tiny_model_dir, tmp_path, monkeypatch
):
    import os

    for key in ("TENSORBOARD_LOGGING_DIR", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_RUN_GROUP", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", FILE_STORE):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracking = tmp_path / "logs" / "sft" / "student" / "seed1"
    job = tiny_job(
        tmp_path / "out",
        tiny_model_dir,
        files / "train.jsonl",
        training={**TRAINING, "epochs": 1, "select_best_sft": False, "report_to": REPORT_TO},
        run_name="sft/student",
        tracking_dir=str(tracking),
    )
    train.run(job)
    events = list((tracking / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in scalars
    runs = list((tracking / "wandb").rglob("offline-run-*"))
    assert runs and os.environ["WANDB_MODE"] == "offline"
    assert any(p.suffix == ".wandb" for p in runs[0].iterdir())  # the run's records, offline
    import mlflow

    mlflow.set_tracking_uri((tracking / "mlruns").as_uri())
    experiment = mlflow.get_experiment_by_name("sft/student")
    assert experiment is not None
    (run,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert run.info.run_name == "sft/student/seed1" and "train_loss" in run.data.metrics


REPORT_TO = ["tensorboard", "wandb", "mlflow"]
FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"


def test_report_to_travels_as_a_resource_and_changes_no_params():
    from types import SimpleNamespace

    from sekd.plan.jobs import Jobs
    from sekd.plan.run_names import runtime_resources, runtime_values

    quiet, loud = _paper(), _paper(report_to=["tensorboard", "mlflow"])
    assert Jobs(quiet).sft("student") == Jobs(loud).sft("student")
    resources = runtime_resources(loud["training"])
    assert resources["report_to"] == "tensorboard,mlflow"
    assert runtime_values(SimpleNamespace(**resources))["report_to"] == ["tensorboard", "mlflow"]
    assert (
        runtime_values(SimpleNamespace(**runtime_resources(quiet["training"])))["report_to"] == []
    )
    assert (
        train.tracking_dir("results/logs/kd/teacher/x/seed2.log")
        == "results/logs/kd/teacher/x/seed2"
    )


def test_an_onpolicy_lora_student_samples_through_its_adapter(
    sft_lora, files, tiny_model_dir, tmp_path
):
    """GKD with finetune.lora: the student samples its sequences (PEFT's generate) and trains its
    adapter on them."""
    teacher, _ = sft_lora
    variant = make_variant(
        "gkd",
        {"jsd_beta": 0.5, "onpolicy_fraction": 1.0, **STUDENT_SAMPLING},
        {"finetune": "lora"},
    )
    job = tiny_job(
        tmp_path / "gkd",
        tiny_model_dir,
        files / "train.jsonl",
        variant=variant,
        teacher=teacher,
        training={**TRAINING, "epochs": 1, "select_best_sft": False},
        lora=LORA,
        sequences={"max_new_tokens": 8},
    )
    summary = train.run(job)
    assert summary["onpolicy"]["samples"] > 0 and summary["lora"]["trainable"] > 0
    assert (tmp_path / "gkd" / "adapter" / "adapter_model.safetensors").is_file()


STUDENT_SAMPLING = {"student_temperature": 1.0, "student_top_k": 0, "student_top_p": 1.0}
