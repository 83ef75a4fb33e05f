"""No GPU job without a GPU (sekd.gpu_required): a job that asked for GPUs stops, before it loads a
model, when torch does not see them; its error names the rule, the resources, torch's report and
the likely cause. Unit tests with torch.cuda monkeypatched, and jobs run through Snakemake on this
CPU machine with GPU resources set."""

from __future__ import annotations

import ast
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_job
from test_workflow import snakemake

from sekd import atomic, gpu_required
from sekd.errors import SekdError
from sekd.gpu_required import GpuUnavailableError, gpus_requested, require_gpus
from sekd.plan.variants import make_variant
from sekd.train import job as train

ROOT = Path(__file__).resolve().parents[1]
SKIP = {gpu_required.SKIP_VARIABLE: gpu_required.SKIP_VALUE}
KD = make_variant("forward_kd", {"lam": 0.5})


def fake_torch(monkeypatch, cuda: str | None, devices: int, warn: str | None = None) -> None:
    """torch as a `cuda` build (None: CPU-only) that sees `devices` GPUs; is_available() warns
    `warn`, as a CUDA build does on a node whose driver is too old."""

    def is_available() -> bool:
        if warn:
            warnings.warn(warn, UserWarning, stacklevel=2)
        return devices > 0

    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)


def failure(rule: str, resources, env: dict) -> str:
    with pytest.raises(GpuUnavailableError) as raised:
        require_gpus(rule, resources, env)
    return str(raised.value)


def test_a_cpu_build_names_the_rule_the_resources_torch_and_the_gpu_env(monkeypatch):
    fake_torch(monkeypatch, None, 0)
    message = failure("decode", {"gpu": 1}, {})
    assert message.startswith("rule decode asked for gpu=1 (at least 1 GPU(s) on this node)")
    for fact in [
        f"torch {torch.__version__}",
        "torch.version.cuda=None",
        "torch.cuda.is_available()=False",
        "torch.cuda.device_count()=0",
        "CUDA_VISIBLE_DEVICES=unset",
    ]:
        assert fact in message
    assert "CPU-only build" in message
    assert "--sdm conda" in message and "workflow/envs/train.yaml" in message
    assert "SEKD_GPU_REQUIRED=skip" in message
    assert issubclass(GpuUnavailableError, SekdError)


@pytest.mark.parametrize(
    "cuda, driver",
    [("13.0", "driver >= 580"), ("12.4", "driver >= 525"), ("12.8", "driver >= 570")],
)
def test_a_cuda_build_without_a_device_names_the_driver_it_needs(monkeypatch, cuda, driver):
    too_old = "CUDA initialization: The NVIDIA driver on your system is too old"
    fake_torch(monkeypatch, cuda, 0, warn=too_old)
    message = failure("sft", {"gpu": 8}, {})
    assert "rule sft asked for gpu=8 (at least 8 GPU(s) on this node) but torch sees 0" in message
    assert f"torch.version.cuda={cuda}" in message and "is_available()=False" in message
    assert f"CUDA {cuda} build that finds no device" in message
    assert f"CUDA {cuda} needs {driver}" in message
    assert "CUDA 13 builds need driver >= 580" in message and "nvidia-smi" in message
    assert "environment.cuda" in message and "no GPU is" in message  # or none allocated
    assert f"torch warned: {too_old}" in message
    assert "CPU-only" not in message


def test_an_empty_cuda_visible_devices_means_no_gpu_allocated(monkeypatch):
    fake_torch(monkeypatch, "13.0", 0)
    message = failure("teacher_store", {"gpu": 1}, {"CUDA_VISIBLE_DEVICES": ""})
    assert "CUDA_VISIBLE_DEVICES=''" in message
    assert "no GPU is allocated to this job" in message and "driver" not in message


def test_fewer_devices_than_asked_points_at_the_allocation(monkeypatch):
    fake_torch(monkeypatch, "12.8", 2)
    message = failure("kd", {"gpu": 8}, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert "rule kd asked for gpu=8" in message and "but torch sees 2" in message
    assert "torch.cuda.is_available()=True, torch.cuda.device_count()=2" in message
    assert "CUDA_VISIBLE_DEVICES='0,1'" in message
    assert "sees 2 of the 8 GPUs" in message and "allocation" in message


def test_enough_devices_pass(monkeypatch, caplog):
    fake_torch(monkeypatch, "13.0", 8)
    with caplog.at_level(logging.INFO, "sekd.gpu_required"):
        assert require_gpus("sft", SimpleNamespace(gpu=16, nodes=2), {}) == 8
    assert "rule sft: asked for gpu=16, nodes=2, torch sees 8 GPU(s)" in caplog.text


@pytest.mark.parametrize(
    "resources",
    [
        {},
        {"gpu": 0},
        {"gpu": 0, "nodes": 1, "tasks": 2},  # the rules' CPU defaults (profiles/local)
        {"gres": ""},
        SimpleNamespace(gpu=0, nodes=1, mpi="srun"),
        SimpleNamespace(),
    ],
)
def test_a_job_without_gpus_is_not_checked(monkeypatch, resources):
    def looked():
        raise AssertionError("torch.cuda consulted for a CPU job")

    monkeypatch.setattr(torch.cuda, "is_available", looked)
    assert require_gpus("decode", resources, {}) == 0


@pytest.mark.parametrize(
    "resources, per_node",
    [
        ({"gpu": 4}, 4),
        ({"gpu": "4"}, 4),
        ({"gpu": 16, "nodes": 2}, 8),  # sbatch --gpus is the job's, shared among its nodes
        ({"gpu": 1, "nodes": 2}, 1),
        ({"gres": "gpu:8", "nodes": 2}, 8),  # a gres is per node
        ({"gres": "gpu:a100:4"}, 4),
        ({"gres": "gpu"}, 1),
        ({"gres": "gpu:h100"}, 1),
        ({"gres": "shard:2,gpu:h100:2"}, 2),
        ({"gres": "tmpdisk:100"}, 0),
        ({"gpus_per_node": 4, "nodes": 2}, 4),
        ({"gpus_per_node": "a100:2"}, 2),
        ({"gpu": 8, "gres": "gpu:2"}, 8),  # the largest per-node count
    ],
)
def test_gpus_per_node_from_gpu_gres_and_gpus_per_node(resources, per_node):
    assert gpus_requested(resources).per_node == per_node
    assert gpus_requested(SimpleNamespace(**resources)).per_node == per_node


def test_a_per_node_request_is_named_as_asked(monkeypatch):
    fake_torch(monkeypatch, "13.0", 4)
    message = failure("sft", {"gres": "gpu:a100:8", "nodes": 2}, {})
    assert "rule sft asked for gres=gpu:a100:8, nodes=2 (at least 8 GPU(s) on this node)" in message
    assert "sees 4 of the 8 GPUs" in message


@pytest.mark.parametrize("value", ["lots", "gpu:two", True])
def test_an_unreadable_gpu_count_is_an_error(value):
    with pytest.raises(ValueError, match="resource gpu="):
        gpus_requested({"gpu": value})


def test_the_escape_hatch_warns_loudly_and_runs(monkeypatch, caplog):
    fake_torch(monkeypatch, None, 0)
    with caplog.at_level(logging.WARNING, "sekd.gpu_required"):
        assert require_gpus("sft", {"gpu": 2, "nodes": 2}, SKIP) == 1
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert text.startswith(
        "SEKD_GPU_REQUIRED=skip: rule sft asked for 1 GPU(s) and runs on the CPU"
    )
    assert "gpu=2, nodes=2" in text and "torch.version.cuda=None" in text and "CPU-only" in text


def test_the_escape_hatch_is_read_from_the_environment(monkeypatch, caplog):
    fake_torch(monkeypatch, "13.0", 1)
    monkeypatch.setenv(gpu_required.SKIP_VARIABLE, "SKIP")
    with caplog.at_level(logging.WARNING, "sekd.gpu_required"):
        require_gpus("decode", {"gpu": 2})
    assert "runs on the 1 visible GPU(s) instead" in caplog.text
    monkeypatch.setenv(gpu_required.SKIP_VARIABLE, "no")
    with pytest.raises(GpuUnavailableError):
        require_gpus("decode", {"gpu": 2})


def test_training_refuses_the_cpu_when_the_job_asked_for_gpus(monkeypatch, tmp_path):
    """sekd.train.job's Trainer arguments (in every torchrun rank) never fall back to use_cpu."""
    fake_torch(monkeypatch, None, 0)
    monkeypatch.delenv(gpu_required.SKIP_VARIABLE, raising=False)
    job = tiny_job(tmp_path / "out", tmp_path, tmp_path / "train.jsonl", gpus_per_node=4)
    asked = r"asked for 4 GPU\(s\) per node"
    with pytest.raises(GpuUnavailableError, match=rf"rule sft {asked} .*CPU-only build"):
        train._training_arguments(job, select_best=False)
    kd = tiny_job(tmp_path / "kd", tmp_path, tmp_path / "train.jsonl", variant=KD, gpus_per_node=4)
    with pytest.raises(GpuUnavailableError, match=rf"rule kd \(forward_kd-lam0\.5\) {asked}"):
        train._training_arguments(kd, select_best=False)
    monkeypatch.setenv(gpu_required.SKIP_VARIABLE, "skip")
    assert train._training_arguments(job, select_best=False).use_cpu
    cpu_job = tiny_job(tmp_path / "cpu", tmp_path, tmp_path / "train.jsonl")  # gpus_per_node=0
    monkeypatch.delenv(gpu_required.SKIP_VARIABLE)
    assert train._training_arguments(cpu_job, select_best=False).use_cpu


def test_refuse_cpu_passes_with_a_device(monkeypatch):
    fake_torch(monkeypatch, "13.0", 1)
    gpu_required.refuse_cpu("sft", 16, {})  # one device per rank: its own


@pytest.mark.parametrize(
    "cuda, driver",
    [("13.0", ">= 580"), ("12.9", ">= 570"), ("12.1", ">= 525"), ("11.8", ">= 450")],
)
def test_driver_needed(cuda, driver):
    assert gpu_required.driver_needed(cuda).startswith(f"driver {driver}")


MODEL_SCRIPTS = [
    "sft", "kd", "teacher_store", "store_fidelity_loss", "teacher_outputs", "decode", "fit",
    "comet_score",
]  # fmt: skip


@pytest.mark.parametrize("name", MODEL_SCRIPTS)
def test_every_model_loading_script_checks_first_inside_its_log(name):
    """The check is the first statement of the script's `with logged(...)` block: it runs before
    any model is loaded, and its error lands in the job's log."""
    tree = ast.parse((ROOT / "workflow" / "scripts" / f"{name}.py").read_text())
    (block,) = [node for node in tree.body if isinstance(node, ast.With)]
    assert ast.unparse(block.items[0].context_expr) == "logged(snakemake.log[0])"
    first = ast.unparse(block.body[0])
    assert first == "require_gpus(snakemake.rule, snakemake.resources)", first


# ---- through Snakemake, on this CPU machine: jobs that asked for GPUs fail before loading models

MICRO = ("--profile", str(ROOT / "profiles" / "local"))
DECODE = "results/hyps/sft/student/seed1/wmt22/de-en.txt"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, alma_mirror) -> Path:
    os.environ.setdefault("SEKD_DATA_MIRROR", str(alma_mirror))
    return tmp_path_factory.mktemp("gpu_required")


def job_log(path: Path) -> str:
    assert path.is_file(), f"no job log {path}"
    return path.read_text()


def assert_failed_before_loading(log: str, rule: str, asked: str) -> None:
    """The job's log holds the check's failure and nothing before it: nothing was logged, loaded
    or trained before the check raised."""
    head, _, trace = log.partition("Traceback (most recent call last):")
    assert len(head.splitlines()) == 1 and "ERROR sekd: job failed after" in head, head
    assert "in require_gpus" in trace  # raised by the check, not by a model loader
    error = next(line for line in trace.splitlines() if "GpuUnavailableError:" in line)
    assert f"GpuUnavailableError: rule {rule} asked for {asked}" in error
    for fact in ["torch.version.cuda=", "torch.cuda.is_available()=False", "device_count()=0"]:
        assert fact in error
    assert f"torch {torch.__version__}" in error and "CUDA_VISIBLE_DEVICES=" in error


@pytest.mark.e2e
def test_an_sft_job_with_a_gpu_fails_on_a_cpu_node_before_loading(workdir, monkeypatch):
    monkeypatch.delenv(gpu_required.SKIP_VARIABLE, raising=False)
    output = snakemake(
        workdir, DECODE, *MICRO, "--set-resources", "sft:gpu=1", "decode:gpu=1", succeed=False
    )
    assert "Error in rule sft" in output and "GpuUnavailableError" in output
    log = job_log(workdir / "results/logs/sft/student/seed1.log")
    assert_failed_before_loading(log, "sft", "gpu=1, nodes=1")
    assert "training examples" not in log  # sekd.train.job never started
    assert not (workdir / "results/models/sft/student/seed1").exists()
    assert not (workdir / "results/checkpoints/sft").exists()  # (pretraining's is local, CPU)
    assert not (workdir / DECODE).exists()


@pytest.mark.e2e
def test_a_decode_job_with_a_gpu_fails_on_a_cpu_node_before_loading(workdir, monkeypatch):
    monkeypatch.delenv(gpu_required.SKIP_VARIABLE, raising=False)
    output = snakemake(workdir, DECODE, *MICRO, "--set-resources", "decode:gpu=1", succeed=False)
    assert "Error in rule decode" in output
    assert (workdir / "results/models/sft/student/seed1").is_dir()  # sft asked for no GPU
    log = job_log(workdir / "results/logs/decode/sft/student/seed1/wmt22/de-en.log")
    assert_failed_before_loading(log, "decode", "gpu=1")
    assert not (workdir / DECODE).exists() and not atomic.temporary(workdir / DECODE).exists()


@pytest.mark.e2e
def test_the_escape_hatch_runs_gpu_jobs_on_the_cpu_with_a_warning(workdir, monkeypatch):
    monkeypatch.setenv(gpu_required.SKIP_VARIABLE, "skip")
    target = "results/models/sft/teacher/seed1"
    snakemake(workdir, target, *MICRO, "--set-resources", "sft:gpu=1")
    log = job_log(workdir / "results/logs/sft/teacher/seed1.log")
    warning = "SEKD_GPU_REQUIRED=skip: rule sft asked for 1 GPU(s) and runs on the CPU instead"
    # twice: the script's check, then sekd.train.job's where the Trainer's arguments pick the CPU
    assert log.count(warning) == 2
    assert "rule sft asked for gpu=1, nodes=1 (at least 1 GPU(s)" in log  # the script's
    assert "rule sft asked for 1 GPU(s) per node (at least 1 GPU(s)" in log  # TrainJob's
    assert (workdir / target / "train_summary.json").is_file()
