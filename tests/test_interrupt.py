"""Interruption (issue 13, class 6): a training job owns its run, stops with a checkpoint when
Snakemake is interrupted (SIGINT to its PID) or killed (SIGKILL), and `--unlock` and a rerun never
put two trainers on one run directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
from conftest import LANGUAGES, TINY_TRAINING

from sekd.data import alma as data
from sekd.train import checkpoints
from sekd.train import job as train
from sekd.train import run_lock as runlock

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TRAINING = {**TINY_TRAINING, "epochs": 3, "save_steps": 2}
STEPS = 9  # 6 tiny records x 2 directions / batch 4 x 3 epochs
DELAY_S = 1.0  # added to every optimizer step, so that a test can interrupt the run mid-way
# A training job that appends "pid time" to a trace at every step, each step slowed down (the sleep
# changes no number). Run as a script (argv: job.json delay trace) or by a Snakemake rule (params).
DRIVER = """
import json, logging, os, sys, time
import transformers
from sekd.train import job as train

logging.basicConfig(level=logging.INFO)

if "snakemake" in globals():
    job_path, delay, trace = snakemake.params.job, snakemake.params.delay, snakemake.params.trace
else:
    job_path, delay, trace = sys.argv[1:4]

training_step = transformers.Trainer.training_step
def slow(self, *args, **kwargs):
    with open(trace, "a") as out:
        out.write(f"{os.getpid()} {time.time()}\\n")
    time.sleep(float(delay))
    return training_step(self, *args, **kwargs)
transformers.Trainer.training_step = slow
train.run(train.TrainJob(**json.loads(open(job_path).read())))
"""
# Slows down every optimizer step of the processes that have it on their path (torchrun's ranks).
SITECUSTOMIZE = """
import os, time
if os.environ.get("SEKD_TEST_STEP_DELAY"):
    import transformers
    training_step = transformers.Trainer.training_step
    def slow(self, *args, **kwargs):
        time.sleep(float(os.environ["SEKD_TEST_STEP_DELAY"]))
        return training_step(self, *args, **kwargs)
    transformers.Trainer.training_step = slow
if os.environ.get("SEKD_TEST_LOADING_S"):  # the ranks take this long to load, having said so
    import transformers
    train = transformers.Trainer.train
    def loading(self, *args, **kwargs):
        open(os.environ["SEKD_TEST_LOADING_MARK"] + os.environ.get("RANK", "0"), "w").close()
        time.sleep(float(os.environ["SEKD_TEST_LOADING_S"]))
        return train(self, *args, **kwargs)
    transformers.Trainer.train = loading
"""
# A one-rule workflow around the driver; it installs the SIGINT forwarding as rules/train.smk does.
SNAKEFILE = """
import sys
sys.path.insert(0, {workflow!r})
from sekd.train.run_lock import forward_interrupts

forward_interrupts()


rule train:
    output:
        directory({out!r}),
    params:
        job={job!r},
        delay={delay!r},
        trace={trace!r},
    script:
        {driver!r}
"""


@pytest.fixture
def run_dir(tiny_records, tmp_path):
    data.write_jsonl(tiny_records, tmp_path / "train.jsonl")
    (tmp_path / "driver.py").write_text(DRIVER)
    return tmp_path


def _job(root: Path, base: Path) -> train.TrainJob:
    job = train.TrainJob(
        variant="sft",
        base_model=str(base),
        tokenizer_dir=str(base),
        train_files=[str(root / "train.jsonl")],
        out_dir=str(root / "model"),
        checkpoint_dir=str(root / "checkpoints"),
        languages=LANGUAGES,
        training=dict(TRAINING),
        seed=1,
    )
    (root / "job.json").write_text(json.dumps(asdict(job)))
    return job


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}


def _trace(root: Path) -> list[tuple[int, float]]:
    path = root / "trace"
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(int(pid), float(at)) for pid, at in lines]


def _wait(what: str, condition, proc=None, timeout: float = 150.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended first (rc {proc.returncode})")
        if time.time() > deadline:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.1)


def _complete(job: train.TrainJob, step: int) -> bool:
    return (Path(job.checkpoint_dir) / f"checkpoint-{step}" / checkpoints.COMPLETE).exists()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _no_overlap(trace: list[tuple[int, float]]) -> None:
    """The steps of each trainer form an interval; no two intervals overlap."""
    spans: dict[int, list[float]] = {}
    for pid, at in trace:
        span = spans.setdefault(pid, [at, at])
        span[0], span[1] = min(span[0], at), max(span[1], at)
    ordered = sorted(spans.values())
    for first, second in pairwise(ordered):
        assert first[1] < second[0], f"two trainers at once: {spans}"


def _snakemake(root: Path, *args: str, log: str = "snakemake.log") -> subprocess.Popen:
    """Snakemake on the one-rule workflow, in its own session (a signal reaches its PID only)."""
    snakefile = root / "Snakefile"
    snakefile.write_text(
        SNAKEFILE.format(
            workflow=str(ROOT / "workflow"),
            out=str(root / "model"),
            job=str(root / "job.json"),
            delay=DELAY_S,
            trace=str(root / "trace"),
            driver=str(root / "driver.py"),
        )
    )
    argv = [SNAKEMAKE, "-s", str(snakefile), "-d", str(root / "work"), "--cores", "1", *args]
    with open(root / log, "a") as out:
        return subprocess.Popen(
            argv, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.mark.slow
def test_a_second_trainer_stops_at_once_and_a_killed_holder_leaves_no_stale_lock(
    run_dir, tiny_model_dir
):
    job = _job(run_dir, tiny_model_dir)
    driver = run_dir / "driver.py"
    argv = [str(driver), str(run_dir / "job.json"), str(DELAY_S), str(run_dir / "trace")]
    holder = subprocess.Popen(
        [sys.executable, *argv],
        env=_env(),
    )
    try:
        _wait("first step", lambda: _trace(run_dir), holder)
        start = time.time()
        with pytest.raises(runlock.RunLockedError) as error:
            train.run(job)
        assert time.time() - start < 5
        message = str(error.value)
        host = socket.gethostname()
        assert f"another trainer (pid {holder.pid} on host {host}) is training" in message
        assert job.checkpoint_dir in message and "wait for it or stop it" in message
        assert not Path(job.out_dir).exists()
        lock = json.loads(runlock.lock_path(job.checkpoint_dir).read_text())
        assert lock == {"pid": holder.pid, "host": host}  # the holder's record, untouched
        _wait("checkpoint 2", lambda: _complete(job, 2), holder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert runlock.lock_path(job.checkpoint_dir).exists()  # left by the killed holder, unlocked

    summary = train.run(job)  # the lock is not stale: this run proceeds, resuming
    assert summary["global_steps"] == STEPS
    assert not runlock.lock_path(job.checkpoint_dir).exists()
    _no_overlap(_trace(run_dir))


@pytest.mark.slow
def test_sigint_to_snakemake_ends_the_trainer_within_a_minute_with_a_checkpoint(
    run_dir, tiny_model_dir
):
    job = _job(run_dir, tiny_model_dir)
    proc = _snakemake(run_dir)
    _wait("checkpoint 2", lambda: _complete(job, 2), proc)
    (trainer,) = {pid for pid, _ in _trace(run_dir)}
    start = time.time()
    proc.send_signal(signal.SIGINT)  # to Snakemake's PID only (its own session)
    _wait("end of the trainer", lambda: _gone(trainer), timeout=60)
    assert proc.wait(timeout=60) != 0
    assert time.time() - start < 60
    note = (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text()
    assert note.startswith("SIGINT: checkpointed")
    stopped_at = max(s for s in range(2, STEPS + 1) if _complete(job, s))
    assert stopped_at < STEPS and not Path(job.out_dir).exists()

    rerun = _snakemake(run_dir, log="rerun.log")
    assert rerun.wait(timeout=150) == 0, (run_dir / "rerun.log").read_text()[-3000:]
    assert (
        f"resuming from {job.checkpoint_dir}/checkpoint-{stopped_at}"
        in (run_dir / "rerun.log").read_text()
    )
    summary = json.loads((Path(job.out_dir) / "train_summary.json").read_text())
    assert summary["global_steps"] == STEPS
    _no_overlap(_trace(run_dir))


@pytest.mark.slow
def test_sigkill_of_snakemake_then_unlock_and_rerun_never_runs_two_trainers(
    run_dir, tiny_model_dir
):
    job = _job(run_dir, tiny_model_dir)
    proc = _snakemake(run_dir)
    _wait("checkpoint 2", lambda: _complete(job, 2), proc)
    (orphan,) = {pid for pid, _ in _trace(run_dir)}
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    unlock = _snakemake(run_dir, "--unlock", log="unlock.log")
    assert unlock.wait(timeout=120) == 0, (run_dir / "unlock.log").read_text()[-3000:]

    rerun = _snakemake(run_dir, log="rerun.log")
    rc = rerun.wait(timeout=150)
    log = (run_dir / "rerun.log").read_text()
    if rc != 0:  # the orphan still held the run: the rerun stopped at once, naming it
        assert f"another trainer (pid {orphan} on host" in log, log[-3000:]
    # the orphan does not train on: it checkpointed and stopped once Snakemake was gone
    _wait("end of the orphan", lambda: _gone(orphan), timeout=60)
    if rc != 0:
        rerun = _snakemake(run_dir, log="rerun2.log")
        assert rerun.wait(timeout=150) == 0, (run_dir / "rerun2.log").read_text()[-3000:]
    summary = json.loads((Path(job.out_dir) / "train_summary.json").read_text())
    assert summary["global_steps"] == STEPS
    _no_overlap(_trace(run_dir))
    assert len({pid for pid, _ in _trace(run_dir)}) == 2  # the orphan, then one rerun


@pytest.mark.slow
def test_sigint_to_a_torchrun_job_checkpoints_on_all_ranks_and_is_passed_on_once(
    run_dir, tiny_model_dir
):
    """The launching process passes a SIGINT on to torchrun once (a second one, as Ctrl-C plus
    Snakemake's forwarding gives, is not: torchrun would stop waiting for the checkpoint), and
    torchrun's own session keeps a terminal's Ctrl-C from reaching the ranks twice."""
    job = _job(run_dir, tiny_model_dir)
    proc = _launch(run_dir, job, {"SEKD_TEST_STEP_DELAY": str(DELAY_S)})
    _wait("checkpoint 2", lambda: _complete(job, 2), proc)
    start = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: to the launching process's group
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Snakemake's forwarding
    assert proc.wait(timeout=60) != 0
    assert time.time() - start < 60
    output = (run_dir / "launch.log").read_text()
    assert "PreemptedError" in output, output[-3000:]
    assert output.count("got SIGINT: passing it on to the ranks") == 1
    assert "got SIGINT: the ranks are already stopping" in output
    # torchrun got one signal, the launching process's SIGTERM, and waited for the checkpoint
    assert "Received 15 death signal" in output and "Received 2 death signal" not in output
    assert "checkpointed" in (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text()
    stopped_at = max(s for s in range(2, STEPS + 1) if _complete(job, s))
    assert stopped_at < STEPS and not runlock.lock_path(job.checkpoint_dir).exists()


def _launch(run_dir: Path, job: train.TrainJob, env: dict) -> subprocess.Popen:
    """`train.run(job)` in a process of its own session, with the test's sitecustomize, 2 ranks;
    its output in launch.log."""
    job.training["nproc_per_node"] = 2
    (run_dir / "job.json").write_text(json.dumps(asdict(job)))
    site = run_dir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**_env(), **env}
    env["PYTHONPATH"] = os.pathsep.join((str(site), env["PYTHONPATH"]))
    run = "import json, sys; from sekd.train import job as train; "
    run += "train.run(train.TrainJob(**json.load(open(sys.argv[1]))))"
    with open(run_dir / "launch.log", "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", run, str(run_dir / "job.json")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.slow
def test_sigusr1_while_the_ranks_load_stops_a_torchrun_job_with_preempted_error(
    run_dir, tiny_model_dir
):
    """Issue 23, item 4: a job that starts within `--signal=USR1@900` of its time limit gets the
    signal before any checkpoint, while its ranks load the models. They catch it, stop together at
    the start of training and the job ends with PreemptedError (it used to be a RuntimeError: the
    ranks died of the signal), so that SLURM and Snakemake retry it."""
    job = _job(run_dir, tiny_model_dir)
    mark = run_dir / "loading-rank"
    proc = _launch(run_dir, job, {"SEKD_TEST_LOADING_S": "4", "SEKD_TEST_LOADING_MARK": str(mark)})
    _wait("ranks loading", lambda: all(Path(f"{mark}{r}").exists() for r in (0, 1)), proc)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=90) != 0
    output = (run_dir / "launch.log").read_text()
    expected = "SIGUSR1 before the first step: nothing new to checkpoint; a rerun starts over"
    assert f"PreemptedError: {expected}" in output, output[-3000:]
    assert (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text() == expected
    assert not list(Path(job.checkpoint_dir).glob("checkpoint-*"))
    assert not runlock.lock_path(job.checkpoint_dir).exists()


def test_the_lock_is_exclusive_records_its_holder_and_goes_with_it(tmp_path):
    run = tmp_path / "checkpoints" / "sft" / "seed1"
    with runlock.hold(run):
        record = json.loads(runlock.lock_path(run).read_text())
        assert record == {"pid": os.getpid(), "host": socket.gethostname()}
        assert not run.exists()  # nothing of the run is written by the lock
        second = runlock.hold(str(run) + "/")  # another open file: flock conflicts
        with pytest.raises(runlock.RunLockedError, match=f"pid {os.getpid()} on host"):
            second.__enter__()
    assert not runlock.lock_path(run).exists()
    with runlock.hold(run):  # free again
        pass


def test_an_empty_lock_file_of_a_dead_holder_is_no_lock(tmp_path):
    run = tmp_path / "run"
    runlock.lock_path(run).write_text("")  # a holder killed before it wrote its record
    with runlock.hold(run):
        assert json.loads(runlock.lock_path(run).read_text())["pid"] == os.getpid()


def test_snakemake_is_recognised_by_its_command_line():
    class Fake:
        def __init__(self, argv):
            self.argv = argv

        def cmdline(self):
            return self.argv

    snakemake = ["/venv/bin/python", "/venv/bin/snakemake", "--cores", "1"]
    assert runlock._is_snakemake(Fake(snakemake))
    assert runlock._is_snakemake(Fake(["python3", "-m", "snakemake", "--target-jobs"]))
    assert runlock._is_snakemake(Fake(["/usr/bin/snakemake", "-n"]))
    script = ["python", "/w/.snakemake/scripts/tmpab12.sft.py"]
    assert not runlock._is_snakemake(Fake(script))
    assert not runlock._is_snakemake(Fake(["bash", "-c", "set -euo pipefail; python x.py"]))
    assert runlock.snakemake_ancestor() is None  # pytest here, not under Snakemake
    with runlock.stop_with_snakemake() as watched:
        assert watched is None


def test_snakemake_passes_sigint_on_only_where_python_s_default_handler_is():
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        assert runlock.forward_interrupts() and runlock.forward_interrupts()  # idempotent
        assert signal.getsignal(signal.SIGINT) is runlock._pass_on
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert not runlock.forward_interrupts()  # another handler is left alone
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_training_rules_install_the_sigint_forwarding():
    rules = (ROOT / "workflow" / "rules" / "train.smk").read_text()
    assert "\nforward_interrupts()\n" in rules
