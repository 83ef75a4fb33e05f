"""DeepSpeed ZeRO-3 on two CPU ranks (gloo): KD matches a one-process run; the student is whole;
the paper's bf16 config trains there too (bf16 weights, fp32 master weights).

The first distributed start JIT-compiles DeepSpeed's shm comm op (about 40 s, g++ and ninja), cached
in .venv/torch_extensions for the next runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAINING
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.plan.variants import make_variant
from sekd.train import checkpoints, distributed
from sekd.train import job as train

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIG = ROOT / "config" / "deepspeed" / "zero3_fp32_cpu.json"
# The same global batch: 1 rank x 2 x 2 accumulation = 2 ranks x 2.
TRAINING = {**TINY_TRAINING, "epochs": 3, "learning_rate": 1e-2}
KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20}
# Tolerance of the comparison: relative 1e-4 on each step's (unrounded) gradient norm and on the
# final weights; the Trainer logs the loss rounded to 4 decimals, so losses may differ by one unit
# in that place. The runs are not bit-equal: ZeRO-3 averages the ranks' gradients with a
# reduce-scatter, (g0 + g1) / 2, where one process accumulates g0 / 2 + g1 / 2, and computes the
# clipping norm over flat partitions; these float32 rounding differences were at most 3e-7
# (gradient norms) and 9e-7 (weights) relative over 9 steps. 1e-4 leaves two orders of
# margin for other CPUs' kernels and still catches real mistakes (a batch sized for one rank, a
# loss averaged wrongly, a teacher left in train mode: 1e-2 and more).
RTOL = 1e-4
STEPS = 27  # 36 examples / global batch 4 x 3 epochs


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_teacher_dir, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    data.write_jsonl(tiny_records * 3, root / "train.jsonl")
    teacher = tiny_teacher_dir
    return root, teacher


def _job(root, teacher, base, name, **training):
    from conftest import LANGUAGES

    return train.TrainJob(
        variant=make_variant("sekd", KD).name,
        plan=make_variant("sekd", KD),
        base_model=str(base),
        tokenizer_dir=str(base),  # models.save writes the tokenizer next to the weights
        train_files=[str(root / "train.jsonl")],
        teacher_model=str(teacher),
        out_dir=str(root / name),
        checkpoint_dir=str(root / f"{name}-checkpoints"),
        languages=LANGUAGES,
        training={**TRAINING, **training},
        seed=1,
        threads=1,
    )


def _steps(summary, key):
    return [(e["step"], e[key]) for e in summary["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def runs(setup, tiny_model_dir):
    """The same KD run in this process and on two ZeRO-3 ranks."""
    root, teacher = setup
    single = train.run(_job(root, teacher, tiny_model_dir, "single"))
    zero3 = train.run(
        _job(root, teacher, tiny_model_dir, "zero3", deepspeed=str(CPU_CONFIG), nproc_per_node=2)
    )
    return single, zero3


def test_zero3_on_two_ranks_matches_one_process(setup, runs, tiny_model_dir):
    root, _ = setup
    single, zero3 = runs
    one, two = _steps(single, "loss"), _steps(zero3, "loss")
    assert len(one) == len(two) == STEPS
    assert [s for s, _ in one] == [s for s, _ in two]
    assert [b for _, b in two] == pytest.approx([a for _, a in one], abs=1.01e-4)
    assert two[-1][1] < two[0][1] - 1e-3  # it learned
    norms = [v for _, v in _steps(single, "grad_norm")]
    assert [v for _, v in _steps(zero3, "grad_norm")] == pytest.approx(norms, rel=RTOL)
    assert all("hard_fraction" in e for e in zero3["log_history"] if "loss" in e)

    # The student saved from ZeRO-3 is whole: the full weights were gathered before rank 0 wrote.
    out = root / "zero3"
    assert not (out.parent / "zero3-checkpoints").exists()
    assert not (out / "training_args.bin").exists()
    assert json.loads((out / "train_summary.json").read_text())["global_steps"] == STEPS
    base, a, b = (
        load_file(str(p / "model.safetensors")) for p in (tiny_model_dir, root / "single", out)
    )
    assert b.keys() == base.keys()
    assert all(b[k].shape == base[k].shape and b[k].numel() > 0 for k in base)
    for k in base:
        torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=1e-6)
    # ... and loads on its own in a fresh process.
    probe = (
        "import json, sys; from transformers import AutoModelForCausalLM as M; print(json.dumps(["
        "{n: list(p.shape) for n, p in M.from_pretrained(d).named_parameters()}"
        " for d in sys.argv[1:]]))"
    )
    shapes = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe, str(tiny_model_dir), str(out)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert shapes[0] == shapes[1] and len(shapes[1]) == len(base)


def _paper() -> tuple[Path, str, str]:
    """The DeepSpeed config the paper config trains under, and its student's and teacher's dtype."""
    from sekd.plan.config import load_config

    config = load_config(ROOT / "config" / "config.yaml")
    models = config["models"]
    return (
        ROOT / config["training"]["deepspeed"],
        models["student"]["dtype"],
        models["teacher"]["dtype"],
    )


@pytest.fixture(scope="module")
def bf16_runs(setup, tiny_model_dir):
    """The KD run of `runs` under the paper's DeepSpeed config and dtypes (bf16), on two ranks
    and on one (torchrun with one rank: the same DeepSpeed engine, no partitioning)."""
    root, teacher = setup
    config, dtype, teacher_dtype = _paper()

    def job(name: str, nproc: int) -> train.TrainJob:
        job = _job(root, teacher, tiny_model_dir, name, deepspeed=str(config), nproc_per_node=nproc)
        return replace(job, dtype=dtype, teacher_dtype=teacher_dtype)

    return train.run(job("bf16-zero3", 2)), train.run(job("bf16-one", 1))


def _relative(a: dict, b: dict) -> float:
    """The largest relative difference (Frobenius norm) of two state dicts' tensors."""
    return max(
        (torch.linalg.norm(a[k].float() - b[k].float()) / torch.linalg.norm(b[k].float())).item()
        for k in b
    )


def test_paper_bf16_config_trains_on_two_cpu_ranks(setup, runs, bf16_runs):
    """The paper's ZeRO-3 config (config.yaml's training.deepspeed, bf16.enabled "auto") with the
    paper's dtype bfloat16 trains on two CPU ranks in bf16: weights bfloat16, the master weights
    DeepSpeed's optimizer steps float32, the saved student bfloat16, finite losses that fall.

    Against one rank (same config, same data and global batch: 1 x 2 x 2 accumulation): both runs
    compute in bf16 and differ only in how a step's two micro-batch gradients are combined
    (reduce-scatter across ranks, in bf16, DeepSpeed's communication dtype under bf16, versus
    accumulation on one rank), so the bound is one bf16 rounding of the gradients (2^-8 relative;
    2^-7 allowed) in the gradient norms and the weights (each tensor's relative norm), and one in
    the losses (2^-8 relative, or the logged loss's rounding to 4 decimals). Observed here: the
    two runs are bit-equal (the halving is exact, the sum rounded once either way).

    Against the fp32 run of `runs` (zero3_fp32_cpu.json, two ranks): bf16 keeps 8 significant
    bits of every weight and activation, and over 27 Adam steps at lr 1e-2 these roundings move
    the trajectory: observed 7e-4 (losses), 7e-3 (gradient norms) and 3e-2 (weights, worst
    tensor) relative; the bounds are about five times those, 2^-8, 2^-5 and 2^-3. The weights
    must also differ by more than 1e-3, where the two fp32 runs agree to 1e-6: bf16 was on.
    """
    root, _ = setup
    _, fp32 = runs
    two, one = bf16_runs
    for summary in two, one:
        assert summary["precision"] == {"weights": "bfloat16", "master_weights": "float32"}
        assert summary["global_steps"] == STEPS
    for summary in runs:  # one process (torch's AdamW) and ZeRO-3 in float32
        assert summary["precision"] == {"weights": "float32", "master_weights": "float32"}
    losses = {name: [v for _, v in _steps(s, "loss")] for name, s in (("two", two), ("one", one))}
    assert len(losses["two"]) == STEPS and all(math.isfinite(v) for v in losses["two"])
    assert losses["two"][-1] < losses["two"][0] - 1e-3  # it learned
    assert losses["two"] == pytest.approx(losses["one"], rel=2**-8, abs=1.01e-4)
    norms = [v for _, v in _steps(one, "grad_norm")]
    assert [v for _, v in _steps(two, "grad_norm")] == pytest.approx(norms, rel=2**-7)
    weights = {
        n: load_file(str(root / n / "model.safetensors"))
        for n in ("bf16-zero3", "bf16-one", "zero3")
    }
    assert all(w.dtype == torch.bfloat16 for w in weights["bf16-zero3"].values())
    assert _relative(weights["bf16-zero3"], weights["bf16-one"]) <= 2**-7

    assert [v for _, v in _steps(two, "loss")] == pytest.approx(
        [v for _, v in _steps(fp32, "loss")], rel=2**-8
    )
    fp32_norms = [v for _, v in _steps(fp32, "grad_norm")]
    assert [v for _, v in _steps(two, "grad_norm")] == pytest.approx(fp32_norms, rel=2**-5)
    assert 1e-3 < _relative(weights["bf16-zero3"], weights["zero3"]) <= 2**-3


def test_bf16_on_cpu_only_under_a_deepspeed_config_that_enables_it(tmp_path):
    paper, _, _ = _paper()
    assert distributed.bf16_on_cpu(str(paper), "bfloat16")
    assert not distributed.bf16_on_cpu(str(paper), "float32")
    assert not distributed.bf16_on_cpu(str(CPU_CONFIG), "bfloat16")
    assert not distributed.bf16_on_cpu(None, "bfloat16")
    on = tmp_path / "on.json"
    on.write_text(json.dumps({"bf16": {"enabled": True}}))
    assert distributed.bf16_on_cpu(str(on), "bfloat16")
    with pytest.raises(ValueError, match=r"training\.deepspeed: cannot read the DeepSpeed config"):
        distributed.bf16_on_cpu(str(tmp_path / "missing.json"), "bfloat16")


def test_transformers_still_refuses_bf16_without_a_gpu(tmp_path):
    """What sekd.train.distributed.bf16_without_gpu works around (docs/deepspeed.md): transformers'
    TrainingArguments refuses bf16 on a machine without a GPU unless use_cpu. When this fails,
    transformers accepts it and the shim can go."""
    import transformers.training_args as training_args
    from transformers import TrainingArguments

    before = training_args.is_torch_bf16_gpu_available
    with distributed.bf16_without_gpu():
        assert training_args.is_torch_bf16_gpu_available()
    assert training_args.is_torch_bf16_gpu_available is before
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="Your setup doesn't support bf16/gpu"):
            TrainingArguments(output_dir=str(tmp_path), bf16=True, report_to=[])


def test_zero3_run_signalled_mid_way_resumes_to_the_same_result(
    setup, runs, tiny_model_dir, caplog
):
    """SIGUSR1 to the job: the ranks agree, checkpoint (partitioned ZeRO-3 states, per-rank RNG)
    and stop; the rerun on the same number of ranks resumes and ends where the uninterrupted run
    ended."""
    root, teacher = setup
    _, reference = runs
    job = _job(
        root,
        teacher,
        tiny_model_dir,
        "zero3-resumed",
        deepspeed=str(CPU_CONFIG),
        nproc_per_node=2,
        save_steps=3,
    )
    path = root / "zero3-resumed.json"
    path.write_text(json.dumps(asdict(job)))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = Path(job.checkpoint_dir) / "checkpoint-3" / checkpoints.COMPLETE
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "PreemptedError" in output, output[-4000:]
    stopped = sorted(Path(job.checkpoint_dir).glob("checkpoint-*/" + checkpoints.COMPLETE))
    assert stopped and (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).exists()
    step = int(stopped[-1].parent.name.split("-")[1])
    assert 3 <= step < STEPS

    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        resumed = train.run(job)
    assert f"resuming from {job.checkpoint_dir}/checkpoint-{step}" in caplog.messages
    keep = ("loss", "grad_norm", "learning_rate", "epoch", "step", "hard_fraction")
    history = [
        [{k: v for k, v in e.items() if k in keep} for e in s["log_history"] if "loss" in e]
        for s in (reference, resumed)
    ]
    assert history[1] == history[0]
    first, second = (load_file(str(root / n / "model.safetensors")) for n in ("zero3", job.out_dir))
    assert all(torch.equal(first[k], second[k]) for k in first)


RUN = (
    "import json, sys; from sekd.train.job import TrainJob, run; "
    "run(TrainJob(**json.load(open(sys.argv[1]))))"
)


def test_zero3_kd_from_a_teacher_store_matches_one_process(setup, tiny_model_dir):
    """KD reading a full teacher store (no teacher engine) on two ZeRO-3 ranks: each rank's
    batches carry their own examples' stored rows."""
    from conftest import LANGUAGES

    from sekd.teacher import store as teacher_store

    root, teacher = setup
    store = root / "store-full"
    teacher_store.build(
        teacher_store.StoreJob(
            teacher_model=str(teacher),
            student_model=str(tiny_model_dir),
            tokenizer_dir=str(tiny_model_dir),
            train_files=[str(root / "train.jsonl")],
            languages=LANGUAGES,
            max_length=TRAINING["max_length"],
            out_dir=str(store),
            mode="full",
        )
    )

    def job(name, **training):
        job = _job(root, teacher, tiny_model_dir, name, **training)
        return replace(job, teacher_model=None, teacher_store=str(store))

    single = train.run(job("store-single"))
    zero3 = train.run(job("store-zero3", deepspeed=str(CPU_CONFIG), nproc_per_node=2))
    one, two = _steps(single, "loss"), _steps(zero3, "loss")
    assert len(one) == len(two) == STEPS
    assert [b for _, b in two] == pytest.approx([a for _, a in one], abs=1.01e-4)
    a, b = (load_file(str(root / n / "model.safetensors")) for n in ("store-single", "store-zero3"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=1e-6)


def test_zero3_onpolicy_kd_matches_one_process(setup, tiny_model_dir):
    """On-policy KD on two ZeRO-3 ranks: gkd at onpolicy_fraction 0.5 (gold steps and steps on
    the student's samples). The ranks sample with synced_gpus, each sample seeded by its example
    and epoch (sekd.train.onpolicy), and every rank takes the same on-policy steps, so the run
    matches one process within RTOL: losses, gradient norms (1e-7 relative here), sample counts.

    The weights too, but for the input embeddings only as a whole (relative norm): the JSD of
    two random tiny models is ~0.002, its gradients small, and Adam's per-entry normalisation
    turns the ZeRO-3 reduce-scatter's float32 rounding into relative differences of up to 3e-3
    (2e-5 absolute) in a few entries with a near-zero gradient (5 of 12,800 observed; the
    tensor's relative difference 7e-6)."""
    root, teacher = setup
    student = {"student_temperature": 1.0, "student_top_k": 0, "student_top_p": 1.0}
    variant = make_variant("gkd", {**student, "jsd_beta": 0.5, "onpolicy_fraction": 0.5})

    def job(name, **training):
        job = _job(root, teacher, tiny_model_dir, name, **training)
        return replace(job, variant=variant.name, plan=variant, sequences={"max_new_tokens": 12})

    single = train.run(job("onpolicy-single"))
    zero3 = train.run(job("onpolicy-zero3", deepspeed=str(CPU_CONFIG), nproc_per_node=2))
    one, two = _steps(single, "loss"), _steps(zero3, "loss")
    assert len(one) == len(two) == STEPS
    assert [b for _, b in two] == pytest.approx([a for _, a in one], abs=1.01e-4)
    norms = [v for _, v in _steps(single, "grad_norm")]
    assert [v for _, v in _steps(zero3, "grad_norm")] == pytest.approx(norms, rel=RTOL)
    fractions = [v for _, v in _steps(zero3, "onpolicy_fraction")]
    assert fractions == [v for _, v in _steps(single, "onpolicy_fraction")]
    assert 0 < sum(fractions) < STEPS  # both gold and on-policy steps
    keep = ("steps", "onpolicy_steps", "samples", "empty_samples", "truncated_samples")
    assert {k: zero3["onpolicy"][k] for k in keep} == {k: single["onpolicy"][k] for k in keep}
    a, b = (
        load_file(str(root / n / "model.safetensors"))
        for n in ("onpolicy-single", "onpolicy-zero3")
    )
    for k in a:
        assert torch.linalg.norm(b[k] - a[k]) <= RTOL * torch.linalg.norm(a[k]), k
        if k != "model.embed_tokens.weight":
            torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=1e-6)


def test_accelerate_shim_is_inert_outside_torchrun(monkeypatch):
    from accelerate.state import PartialState

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    before = PartialState._prepare_backend
    distributed.accelerate_cpu_shim()
    assert PartialState._prepare_backend is before


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("gpu[07-09,12],cpu1", "gpu07"),
        ("node3", "node3"),
        ("a1,b2", "a1"),
        ("n[001-4]-ib", "n001-ib"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, first, monkeypatch):
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)  # no scontrol: parse
    assert distributed.first_host(nodelist) == first


def test_torchrun_command_for_one_and_several_nodes(monkeypatch):
    assert distributed.slurm_nodes({}) == distributed.Nodes()
    one = distributed.torchrun_argv("job.json", 4, distributed.Nodes())
    assert "--standalone" in one and "--nproc-per-node=4" in one
    assert one[-3:] == ["-m", "sekd.train.job", "job.json"]
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_CPUS_ON_NODE": "64",
    }
    nodes = distributed.slurm_nodes(env)
    assert nodes == distributed.Nodes(2, 1, "gpu07", 29500 + 4242, "4242")
    argv = distributed.torchrun_argv("job.json", 8, nodes)
    for arg in ("--nnodes=2", "--node-rank=1", "--rdzv-endpoint=gpu07:33742", "--rdzv-id=4242"):
        assert arg in argv
    assert "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in argv
    # the shutdown timeout where this torch's torchrun takes it (not torch 2.10's, the CUDA 12 env)
    shutdown = f"--shutdown-timeout={distributed.SHUTDOWN_TIMEOUT_S}"
    assert (shutdown in argv) == distributed.torchrun_has_option("--shutdown-timeout")
    monkeypatch.setattr(distributed, "torchrun_has_option", lambda option: False)
    assert shutdown not in distributed.torchrun_argv("job.json", 8, nodes)
    srun = distributed.srun_argv(["job.json", "8"], nodes, env)
    assert srun[:5] == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
    ]
    assert "--cpus-per-task=64" in srun and "--mem=0" in srun
    assert srun[-3:] == ["sekd.train.distributed", "job.json", "8"]


def test_under_slurm_the_ranks_run_as_a_job_step(monkeypatch):
    """SLURM's warning signal (sbatch --signal=USR1@300) reaches job steps only, and the batch
    step runs on the first node only: from a batch step (or salloc) the ranks start under srun."""
    monkeypatch.setattr(distributed.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert distributed.in_slurm_batch_step({"SLURM_JOB_ID": "7"})
    assert not distributed.in_slurm_batch_step({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0"})
    assert not distributed.in_slurm_batch_step({})
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)
    assert not distributed.in_slurm_batch_step({"SLURM_JOB_ID": "7"})


def test_the_paper_config_trains_under_zero3():
    from sekd.plan.config import load_config

    training = load_config(ROOT / "config" / "config.yaml")["training"]
    assert training["save_steps"] and training["nproc_per_node"] is None
    for path in (ROOT / training["deepspeed"], CPU_CONFIG):
        zero = json.loads(path.read_text())["zero_optimization"]
        assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert json.loads((ROOT / training["deepspeed"]).read_text())["bf16"] == {"enabled": "auto"}
    mini = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")
    assert mini["training"]["deepspeed"] is None and mini["training"]["save_steps"] is None


def test_processes_per_node_follow_what_slurm_gave(caplog):
    outside = {}
    assert distributed.processes_per_node(None, env=outside) == 1
    assert distributed.processes_per_node(2, env=outside) == 2
    assert distributed.processes_per_node(None, 8, env=outside) == 8  # the request, outside SLURM
    assert distributed.processes_per_node(4, 8, env=outside) == 4  # training.nproc_per_node
    given = {"SLURM_GPUS_ON_NODE": "4"}  # SLURM gave 4 GPUs on this node
    assert distributed.processes_per_node(None, 4, env=given) == 4
    assert distributed.processes_per_node(None, 8, env=given) == 4
    assert "SLURM gave 4 GPU(s) on this node, the job asked for 8" in caplog.text
    assert distributed.processes_per_node(None, 2, env={"SLURM_GPUS_ON_NODE": ""}) == 2


def test_zero3_pooled_step_options_match_one_process(setup, tiny_model_dir):
    """sekd_topk with norm=optimizer_batch and pool=optimizer_batch on two ZeRO-3 ranks: N of
    the step is summed over the ranks and the top-k pool gathered from them (sekd.train.pool), so
    the run matches one process with the same global batch (2 x 2 accumulation) within RTOL."""
    root, teacher = setup
    options = {"norm": "optimizer_batch", "pool": "optimizer_batch"}
    variant = make_variant("sekd_topk", KD, options)

    def job(name, **training):
        job = _job(root, teacher, tiny_model_dir, name, epochs=1, **training)
        return replace(job, variant=variant.name, plan=variant)

    single = train.run(job("pooled-single"))
    zero3 = train.run(job("pooled-zero3", deepspeed=str(CPU_CONFIG), nproc_per_node=2))
    one, two = _steps(single, "loss"), _steps(zero3, "loss")
    assert len(one) == len(two) == STEPS // 3
    assert [b for _, b in two] == pytest.approx([a for _, a in one], abs=1.01e-4)
    norms = [v for _, v in _steps(single, "grad_norm")]
    assert [v for _, v in _steps(zero3, "grad_norm")] == pytest.approx(norms, rel=RTOL)
    a, b = (
        load_file(str(root / n / "model.safetensors")) for n in ("pooled-single", "pooled-zero3")
    )
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=1e-6)
