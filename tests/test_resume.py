"""Resume on preemption: a run killed (SIGKILL) or signalled (SIGUSR1) mid-way and rerun ends
with the same weights and the same logged metrics as an uninterrupted run, bit for bit on CPU."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAINING, stop_at
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.plan.variants import make_variant
from sekd.train import checkpoints, distributed
from sekd.train import job as train
from sekd.train.distributed import PreemptedError

pytestmark = [pytest.mark.resume, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {**TINY_TRAINING, "epochs": 3, "learning_rate": 1e-2, "save_steps": 2}
KD = {"lam": 0.5, "beta": (0.9, 0.1), "gamma": 0.4, "top_k_percent": 20}
STEPS = 9  # 12 examples / batch 4 x 3 epochs
# Runs the job in a fresh process, each optimizer step slowed down so that the test can interrupt
# it mid-way (the sleep changes no number).
DRIVER = """
import json, sys, time
import transformers
from sekd.train import job as train

training_step = transformers.Trainer.training_step
def slow(self, *args, **kwargs):
    time.sleep(float(sys.argv[2]))
    return training_step(self, *args, **kwargs)
transformers.Trainer.training_step = slow
train.run(train.TrainJob(**json.loads(open(sys.argv[1]).read())))
"""


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    teacher = tiny_teacher_dir
    (root / "driver.py").write_text(DRIVER)
    return root, teacher


def _job(root, base, name, variant="sft", teacher=None):
    from conftest import LANGUAGES

    return train.TrainJob(
        variant="sft" if variant == "sft" else variant.name,
        plan=None if variant == "sft" else variant,
        base_model=str(base),
        tokenizer_dir=str(base),
        train_files=[str(root / "train.jsonl")],
        valid_files=[] if teacher else [str(root / "valid.jsonl")],
        teacher_model=str(teacher) if teacher else None,
        out_dir=str(root / name),
        checkpoint_dir=str(root / f"{name}-checkpoints"),
        languages=LANGUAGES,
        training=dict(TRAINING),
        seed=1,
    )


def _start(root, job, delay=0.4):
    from dataclasses import asdict

    path = Path(job.checkpoint_dir + ".json")
    path.write_text(json.dumps(asdict(job)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    return subprocess.Popen(
        [sys.executable, str(root / "driver.py"), str(path), str(delay)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_checkpoint(proc, job, step, timeout=180):
    marker = Path(job.checkpoint_dir) / f"checkpoint-{step}" / checkpoints.COMPLETE
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before checkpoint {step}:\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.05)


def _metrics(summary):
    """Every logged number but timings; the best checkpoint by name."""
    keep = ("loss", "grad_norm", "learning_rate", "epoch", "step", "eval_loss", "hard_fraction")
    history = [
        {k: v for k, v in e.items() if k in keep}
        for e in summary["log_history"]
        if "train_runtime" not in e
    ]
    best = summary["best_checkpoint"]
    return history, best and Path(best).name, summary["best_eval_loss"], summary["global_steps"]


def _same_weights(a, b):
    first, second = (load_file(str(Path(p) / "model.safetensors")) for p in (a, b))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _resume(job, caplog):
    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        summary = train.run(job)
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")]
    return summary, resumed


def test_sigkill_then_rerun_resumes_sft_with_best_checkpoint_selection(
    setup, tiny_model_dir, caplog
):
    root, _ = setup
    reference = train.run(_job(root, tiny_model_dir, "sft-reference"))
    assert reference["best_checkpoint"] and reference["global_steps"] == STEPS

    job = _job(root, tiny_model_dir, "sft")
    proc = _start(root, job)
    _wait_for_checkpoint(proc, job, 4)  # mid-way through the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not Path(job.out_dir).exists()

    summary, resumed = _resume(job, caplog)
    assert resumed and int(resumed[0].rsplit("-", 1)[1]) >= 4
    assert _metrics(summary) == _metrics(reference)
    evals = [e["eval_loss"] for e in summary["log_history"] if "eval_loss" in e]
    assert len(evals) == 3 and summary["best_eval_loss"] == min(evals)
    _same_weights(job.out_dir, root / "sft-reference")
    assert not Path(job.checkpoint_dir).exists()  # removed after the successful run


def test_sigusr1_checkpoints_stops_and_the_rerun_resumes_kd(setup, tiny_model_dir, caplog):
    root, teacher = setup
    variant = make_variant("skew_kd", KD)  # progressive β: the schedule resumes too
    reference = train.run(_job(root, tiny_model_dir, "kd-reference", variant, teacher))

    job = _job(root, tiny_model_dir, "kd", variant, teacher)
    proc = _start(root, job)
    _wait_for_checkpoint(proc, job, 2)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "PreemptedError" in output, output[-3000:]
    note = (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text()
    assert note.startswith("SIGUSR1: checkpointed")
    stopped_at = max(
        int(p.name.split("-")[1]) for p in Path(job.checkpoint_dir).glob("checkpoint-*")
    )
    assert 2 <= stopped_at < STEPS
    assert (Path(job.checkpoint_dir) / f"checkpoint-{stopped_at}" / checkpoints.COMPLETE).exists()

    summary, resumed = _resume(job, caplog)
    assert resumed and resumed[0].endswith(f"checkpoint-{stopped_at}")
    assert _metrics(summary) == _metrics(reference)
    _same_weights(job.out_dir, root / "kd-reference")


def test_checkpoints_of_another_job_or_incomplete_ones_are_not_resumed(setup, tiny_model_dir):
    root, _ = setup
    job = _job(root, tiny_model_dir, "tidy")
    ckpts = Path(job.checkpoint_dir)
    assert checkpoints.prepare_checkpoints(job) is None  # records the job the checkpoints belong to
    for step, complete in ((2, True), (4, True), (6, False)):
        (ckpts / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (ckpts / f"checkpoint-{step}" / checkpoints.COMPLETE).write_text("{}")
    assert checkpoints.prepare_checkpoints(job) == str(ckpts / "checkpoint-4")
    assert not (ckpts / "checkpoint-6").exists()  # killed while writing it
    # save_steps and threads may change between attempts; the learning rate may not
    again = train.TrainJob(**{**job.__dict__, "threads": 2})
    again.training = {**job.training, "save_steps": 5}
    assert checkpoints.prepare_checkpoints(again) == str(ckpts / "checkpoint-4")
    other = train.TrainJob(**{**job.__dict__, "training": {**job.training, "learning_rate": 1.0}})
    assert checkpoints.prepare_checkpoints(other) is None
    assert not list(ckpts.glob("checkpoint-*"))


# --- a corrupt newest checkpoint (issue 23, item 2) ---------------------------------------------


def _checkpoint(root: Path, step: int, files: dict[str, bytes], manifest: bool = True) -> Path:
    """checkpoint-`step` of `root` holding `files`, marked complete (with its manifest)."""
    path = root / f"checkpoint-{step}"
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(content)
    mark = {"step": step, **({"files": checkpoints.manifest(path)} if manifest else {})}
    (path / checkpoints.COMPLETE).write_text(json.dumps(mark))
    return path


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


FILES = {"model.safetensors": b"w" * 1000, "optimizer.pt": b"o" * 2000, "global_step4/x": b"z"}
DAMAGE = {
    "truncated": (
        lambda c: (c / "optimizer.pt").write_bytes(b"o" * 500),
        "optimizer.pt has 500 bytes, its manifest 2000 (truncated)",
    ),
    "bit-flipped": (
        lambda c: _flip(c / "model.safetensors", 600),
        "model.safetensors differs from its manifest",
    ),
    "missing": (lambda c: (c / "global_step4" / "x").unlink(), "global_step4/x is missing"),
    "unreadable mark": (
        lambda c: (c / checkpoints.COMPLETE).write_text('{"step": 4, "fil'),
        f"its completion mark {checkpoints.COMPLETE} cannot be read",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_newest_checkpoint_that_does_not_match_its_manifest_is_skipped_and_removed(
    setup, tiny_model_dir, caplog, damage
):
    root, _ = setup
    job = _job(root, tiny_model_dir, f"corrupt-{damage.replace(' ', '-')}")
    ckpts = Path(job.checkpoint_dir)
    assert checkpoints.prepare_checkpoints(job) is None
    _checkpoint(ckpts, 2, FILES)
    newest = _checkpoint(ckpts, 4, FILES)
    assert checkpoints.verify(newest) is None
    spoil, why = DAMAGE[damage]
    spoil(newest)
    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        assert checkpoints.prepare_checkpoints(job) == str(ckpts / "checkpoint-2")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith(f"{newest} does not match its manifest, not resumed from and removed: ")
        and why in m
        for m in warnings
    ), warnings
    assert not newest.exists() and checkpoints.verify(ckpts / "checkpoint-2") is None
    # nothing intact left: start over
    spoil_older, _ = DAMAGE["truncated"]
    spoil_older(ckpts / "checkpoint-2")
    assert checkpoints.prepare_checkpoints(job) is None
    assert not list(ckpts.glob("checkpoint-*"))


def test_a_checkpoint_of_an_older_sekd_without_a_manifest_is_trusted(setup, tiny_model_dir, caplog):
    root, _ = setup
    job = _job(root, tiny_model_dir, "legacy")
    ckpts = Path(job.checkpoint_dir)
    checkpoints.prepare_checkpoints(job)
    _checkpoint(ckpts, 2, FILES)
    legacy = _checkpoint(ckpts, 4, FILES, manifest=False)  # {"step": 4}, as before manifests
    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        assert checkpoints.prepare_checkpoints(job) == str(legacy)
    assert f"{legacy}: written without a manifest (an older sekd): trusted unchecked" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_signal_while_a_checkpoint_is_hashed_stops_the_check_and_keeps_it(setup, tiny_model_dir):
    root, _ = setup
    job = _job(root, tiny_model_dir, "hashing")
    checkpoints.prepare_checkpoints(job)
    kept = _checkpoint(Path(job.checkpoint_dir), 2, FILES)
    signals = checkpoints.Signals()
    signals.received = signal.SIGUSR1
    with pytest.raises(PreemptedError, match=r"^SIGUSR1 while checking .*a rerun checks it again"):
        checkpoints.prepare_checkpoints(job, signals=signals)
    assert checkpoints.verify(kept) is None
    assert (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text().startswith("SIGUSR1")


def test_a_bit_flip_in_the_newest_checkpoint_resumes_from_the_newest_intact_one(
    setup, tiny_model_dir, caplog, monkeypatch
):
    """SFT keeps its best checkpoint beside the newest: checkpoint-5 (a signal) holds a flipped
    bit, the rerun resumes from the best one (epoch 1's, step 3) and ends as an uninterrupted
    run does."""
    root, _ = setup
    reference = train.run(_job(root, tiny_model_dir, "flip-reference"))
    job = _job(root, tiny_model_dir, "flip")
    stop_at(monkeypatch, 5)
    with pytest.raises(PreemptedError):
        train.run(job)
    monkeypatch.undo()
    ckpts = Path(job.checkpoint_dir)
    assert [p.name for p in checkpoints.completed(ckpts)] == ["checkpoint-3", "checkpoint-5"]
    weights = ckpts / "checkpoint-5" / "model.safetensors"
    _flip(weights, weights.stat().st_size // 2)  # same size: only the hash tells

    summary, resumed = _resume(job, caplog)
    assert resumed == [f"resuming from {ckpts}/checkpoint-3"]
    assert any(
        r.getMessage().startswith(f"{ckpts}/checkpoint-5 does not match its manifest")
        and "model.safetensors differs from its manifest" in r.getMessage()
        for r in caplog.records
    )
    assert _metrics(summary) == _metrics(reference)
    _same_weights(job.out_dir, root / "flip-reference")


# --- preemption before the first checkpoint (issue 23, item 4) ----------------------------------

# Runs the job in a fresh process; the signal arrives while the student loads (a job started
# within --signal=USR1@900 of its time limit), before any checkpoint and before training.
EARLY_DRIVER = """
import json, os, signal, sys
from sekd.train import job as train

load = train.models.load_causal_lm
def signalled_while_loading(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    return load(*args, **kwargs)
train.models.load_causal_lm = signalled_while_loading
train.run(train.TrainJob(**json.loads(open(sys.argv[1]).read())))
"""


@pytest.mark.parametrize("signum", ["SIGUSR1", "SIGTERM"])
def test_a_signal_before_the_first_checkpoint_raises_preempted_error(setup, tiny_model_dir, signum):
    root, _ = setup
    job = _job(root, tiny_model_dir, f"early-{signum}")
    path = Path(job.checkpoint_dir + ".json")
    path.write_text(json.dumps(asdict(job)))
    (root / "early.py").write_text(EARLY_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    done = subprocess.run(
        [sys.executable, str(root / "early.py"), str(path), signum],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    # before: the process died of the signal (rc -10 / -15), saying nothing
    assert done.returncode == 1 and "PreemptedError" in output, (done.returncode, output[-3000:])
    note = (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text()
    assert note == f"{signum} before the first step: nothing new to checkpoint; a rerun starts over"
    assert note in output and not list(Path(job.checkpoint_dir).glob("checkpoint-*"))
    assert train.run(job)["global_steps"] == STEPS  # the retry trains


def test_a_signal_while_the_checkpoints_are_checked_stops_before_training(
    setup, tiny_model_dir, monkeypatch
):
    """In-process: the run's handlers catch it (a no-op handler of the test's stands behind them,
    in case they do not), the rerun would resume from the same checkpoint."""
    root, _ = setup
    job = _job(root, tiny_model_dir, "early-check")
    stop_at(monkeypatch, 4)
    with pytest.raises(PreemptedError):
        train.run(job)
    monkeypatch.undo()
    verify = checkpoints.verify

    def signalled(checkpoint, signals=None):
        os.kill(os.getpid(), signal.SIGTERM)
        return verify(checkpoint)

    monkeypatch.setattr(checkpoints, "verify", signalled)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with pytest.raises(PreemptedError) as raised:
            train.run(job)
    finally:
        signal.signal(signal.SIGTERM, previous)
    expected = "SIGTERM before training started: nothing new to checkpoint; a rerun resumes from "
    assert str(raised.value) == expected + "checkpoint-4"
    assert (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text() == str(raised.value)
    assert checkpoints.completed(Path(job.checkpoint_dir))[-1].name == "checkpoint-4"


@dataclass
class _Job:
    threads: int = 1


def test_a_torchrun_job_whose_ranks_die_of_the_signal_raises_preempted_error(tmp_path, monkeypatch):
    """The ranks got the signal passed on before they could catch it (still importing): torchrun
    fails without a checkpoint note. That is a preemption too, not a RuntimeError."""
    ranks = [sys.executable, "-c", "import time; time.sleep(60)"]  # stands in for torchrun
    monkeypatch.setattr(distributed, "_launcher_argv", lambda *args: ranks)
    paths = (tmp_path / "job.json", tmp_path / "preempted.json")
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # in case
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(PreemptedError, match=r"^SIGUSR1 passed on to the ranks, which exit"):
            distributed.launch(_Job(), 1, *paths)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    # one caught before torchrun started is passed on once the launcher's handlers are in place
    with pytest.raises(PreemptedError, match=r"^SIGTERM passed on to the ranks"):
        distributed.launch(_Job(), 1, *paths, earlier=lambda: signal.SIGTERM)
