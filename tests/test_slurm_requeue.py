"""A KD job that SLURM requeues, or whose node goes DOWN, resumes from its checkpoint (issue 23,
item 3): one SLURM job, three attempts, the weights of an uninterrupted run.

On the one-node cluster of tests/test_slurm.py, the micro study's KD run
(`results/models/kd/teacher/word_kd-lam0.5/seed1`, 10 optimizer steps) goes through sbatch with
`--profile profiles/slurm` (restart-times as the profile has it), checkpoints every 2 steps
(the `save_steps` resource) and each step slowed down (a sitecustomize that sleeps in the kd
script's `Trainer.training_step`; the sleep changes no number). While it trains:

1. `scontrol requeue <job>`: SLURM sends SIGTERM to the job's processes; the trainer checkpoints
   at the end of its step and stops (sekd.train.checkpoints, the note `preempted.json`), and SLURM
   puts the same job back in the queue (Restarts=1).
2. Once the second attempt has resumed and written a checkpoint of its own,
   `scontrol update nodename=localhost state=down`: SLURM requeues the job "due to failure of
   node" (JobRequeue=1, SLURM's default; the node returns to service at once, ReturnToService=2
   and its slurmd answering) and the trainer checkpoints again (Restarts=2).
3. The third attempt resumes and completes.

SLURM holds a requeued job back for 121 s (its begin time; SLURM 22.05); the test releases it at
once with `scontrol update jobid=<job> StartTime=now`, as an administrator may, after the previous
attempt's trainer has checkpointed and released the run (its lock file gone: after `state=down`
SLURM marks the job pending at once, while the processes on the node are still stopping).
Snakemake (its status command is squeue here) sees the job pending again, not failed, and waits:
one submission, no retry.

The reference is the same target run uninterrupted in the same working directory with
profiles/local (test_slurm shows a SLURM run equals a local one); its model is moved aside, so that
the SLURM run trains only the KD job. Both log the loss at every step (`training.logging_steps:
1`): the Trainer restarts its logging interval on resume, so with 2 the loss logged after a resume
at an odd step would be a mean over fewer steps than the reference's. Weights and logged metrics
must be bit-equal. About 2 minutes on 2 busy cores; needs root and SLURM as tests/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import slurm_cluster
import yaml
from test_resume import _metrics, _same_weights
from test_slurm import (
    CONFIGS,
    FAKE_GPUS,
    PROFILE,
    ROOT,
    SNAKEFILE,
    SNAKEMAKE,
    TEST_NODE,
    paper_profile,
    write_test_profile,
)

from sekd.train import checkpoints
from sekd.train import run_lock as runlock

RUN = "kd/teacher/word_kd-lam0.5/seed1"
TARGET = f"results/models/{RUN}"
CHECKPOINTS = f"results/checkpoints/{RUN}"
LOG = f"results/logs/{RUN}.log"
STEPS = 10  # 160 micro training examples / batch 16, one epoch
SAVE_STEPS = 2
DELAY_S = 1.0  # per micro-batch: 2 s per optimizer step (2 accumulation steps)
TIMEOUT = 420  # s for the SLURM run (about 90 s on 2 busy cores)
# Slows down every micro-batch of the kd rule's script (Snakemake runs it as
# .snakemake/scripts/tmp<...>.kd.py); other Python processes (Snakemake itself) are left alone.
SITECUSTOMIZE = """
import os, sys, time
if os.environ.get("SEKD_TEST_STEP_DELAY") and sys.argv and sys.argv[0].endswith(".kd.py"):
    import transformers
    training_step = transformers.Trainer.training_step
    def slow(self, *args, **kwargs):
        time.sleep(float(os.environ["SEKD_TEST_STEP_DELAY"]))
        return training_step(self, *args, **kwargs)
    transformers.Trainer.training_step = slow
"""
NOTE = re.compile(
    r"^SIGTERM: checkpointed (\S+/checkpoint-(\d+)) at step \d+ of 10; a rerun resumes"
)

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from slurm_cluster.serve_one_node(tmp_path_factory, "slurm-requeue-cluster")


def _profile(directory: Path) -> Path:
    """The test profile of tests/test_slurm.py with checkpoints every SAVE_STEPS steps of kd and
    the paper profile's restart-times (a retry would show as a second submission)."""
    write_test_profile(directory, TEST_NODE, {"kd": {"save_steps": SAVE_STEPS}})
    path = directory / "config.v8+.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["restart-times"] = paper_profile()["restart-times"]
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return directory


def _start(
    workdir: Path, profiles: list[Path], configs: list[str], env: dict, log: Path
) -> subprocess.Popen:
    """Snakemake on TARGET in `workdir`, in the background, its output in `log`."""
    cmd = [
        "timeout", "-k", "15", str(TIMEOUT), str(SNAKEMAKE),
        *[arg for p in profiles for arg in ("--profile", str(p))],
        "--snakefile", str(SNAKEFILE), "--directory", str(workdir), TARGET,
        "--configfile", *configs,
    ]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )


def _finish(proc: subprocess.Popen, log: Path) -> None:
    """Wait for Snakemake (killing its group if the wait is interrupted); it must succeed."""
    try:
        rc = proc.wait(timeout=TIMEOUT + 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 0, f"snakemake exited {rc}:\n{log.read_text()[-6000:]}"


class Watch:
    """The running workflow: waits on it, and reads the SLURM job and the run's files."""

    def __init__(self, cluster, proc: subprocess.Popen, workdir: Path, log: Path):
        self.cluster, self.proc, self.workdir, self.log = cluster, proc, workdir, log
        self.job_id: str | None = None

    def wait(self, what: str, ready, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while True:
            found = ready()
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"snakemake ended before {what}:\n{self.details()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout:.0f} s:\n{self.details()}")
            time.sleep(0.2)

    def details(self) -> str:
        run_log = self.workdir / LOG
        tail = run_log.read_text()[-3000:] if run_log.exists() else "(no run log)"
        return f"{self.log.read_text()[-4000:]}\n--- {LOG}\n{tail}\n{self.cluster.logs()}"

    def record(self) -> dict:
        if self.job_id is None:
            ids = slurm_cluster.submitted_jobs(self.log.read_text()).values()
            self.job_id = next(iter(ids), None)
        found = [r for r in self.cluster.jobs() if r["JobId"] == self.job_id]
        return found[0] if found else {}

    def complete_checkpoint_after(self, step: int) -> int | None:
        """The latest complete checkpoint's step, if later than `step`."""
        done = [
            int(p.name.split("-")[1])
            for p in checkpoints.checkpoints(self.workdir / CHECKPOINTS)
            if (p / checkpoints.COMPLETE).exists()
        ]
        return max(done) if done and max(done) > step else None

    def requeued(self, restarts: int, previous_note: str = "") -> str:
        """Wait until SLURM has put the job back in the queue for the `restarts`-th time and its
        trainer has checkpointed (a new note) and released the run; release the job; the note."""
        self.wait(
            f"restart {restarts} of the job",
            lambda: (r := self.record()).get("Restarts") == str(restarts)
            and r["JobState"] == "PENDING",
        )
        note_file = self.workdir / CHECKPOINTS / checkpoints.PREEMPTED
        lock = runlock.lock_path(self.workdir / CHECKPOINTS)

        def stopped():
            note = note_file.read_text() if note_file.exists() else ""
            return note if note != previous_note and not lock.exists() else None

        note = self.wait(f"the trainer's checkpoint on restart {restarts}", stopped, 60)
        node = slurm_cluster.NODE
        if self.cluster.node_states().get(node, "").startswith("down"):  # still: resume it
            self.cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        self.wait(f"{node} back in service", lambda: self.cluster.node_states().get(node) == "idle")
        self.cluster.run("scontrol", "update", f"jobid={self.job_id}", "StartTime=now")
        return note

    def resumed_from(self) -> list[str]:
        """The checkpoints this attempt resumed from, by the run's log (Snakemake starts it afresh
        in every attempt)."""
        text = (self.workdir / LOG).read_text()
        return re.findall(r" sekd\.train\.job\.checkpoints: resuming from (\S+)$", text, re.M)


def _interrupt(cluster, watch: Watch) -> dict:
    """`scontrol requeue` once the first attempt has checkpoint 2, the node DOWN once the second
    has a checkpoint of its own; the trainer's notes and the second attempt's resume."""
    seen = {}
    watch.wait("checkpoint 2", lambda: watch.complete_checkpoint_after(SAVE_STEPS - 1))
    assert watch.record()["JobState"] == "RUNNING", watch.details()
    cluster.run("scontrol", "requeue", watch.job_id)
    seen["requeue_note"] = watch.requeued(1)
    step = int(_checkpoint(seen["requeue_note"])[1])
    watch.wait("a checkpoint of the second attempt", lambda: watch.complete_checkpoint_after(step))
    seen["second_attempt_resumed_from"] = watch.resumed_from()
    cluster.run(
        "scontrol", "update", f"nodename={slurm_cluster.NODE}", "state=down",
        "reason=sekd-requeue-test",
    )  # fmt: skip
    seen["node_down_note"] = watch.requeued(2, seen["requeue_note"])
    return seen


@pytest.fixture(scope="module")
def interrupted(alma_mirror, cluster, tmp_path_factory):
    """The reference run, then the SLURM run with its two interruptions; what each left."""
    workdir = tmp_path_factory.mktemp("requeue-run")
    # one logged loss per step (module docstring)
    configs = [*CONFIGS, str(workdir.parent / "requeue-logging.yaml")]
    Path(configs[-1]).write_text("training: {logging_steps: 1}\n")
    local = {**os.environ, "SEKD_DATA_MIRROR": str(alma_mirror)}
    t0 = time.monotonic()
    log = workdir.parent / "requeue-reference.log"
    _finish(_start(workdir, [ROOT / "profiles" / "local"], configs, local, log), log)
    reference = tmp_path_factory.mktemp("requeue-reference") / "model"
    shutil.move(workdir / TARGET, reference)
    t1 = time.monotonic()

    site = tmp_path_factory.mktemp("requeue-site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**cluster.env, **FAKE_GPUS, "SEKD_DATA_MIRROR": str(alma_mirror)}
    env["SEKD_TEST_STEP_DELAY"] = str(DELAY_S)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    log = workdir.parent / "requeue-slurm.log"
    profiles = [PROFILE.parent, _profile(tmp_path_factory.mktemp("requeue-profile"))]
    proc = _start(workdir, profiles, configs, env, log)
    watch = Watch(cluster, proc, workdir, log)
    try:
        seen = _interrupt(cluster, watch)
    except BaseException:  # the cluster's teardown cancels the job
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    _finish(proc, log)
    seen.update(
        workdir=workdir,
        reference=reference,
        output=log.read_text(),
        record=watch.record(),
        last_attempt_resumed_from=watch.resumed_from(),
        controller_log=(cluster.root / "log" / "slurmctld.log").read_text(),
        seconds={"reference": t1 - t0, "slurm": time.monotonic() - t1},
    )
    return seen


def _checkpoint(note: str) -> tuple[str, int]:
    match = NOTE.match(note)
    assert match, note
    return match[1], int(match[2])


def test_scontrol_requeue_checkpoints_and_the_requeued_job_resumes(interrupted, capsys):
    with capsys.disabled():
        seconds = interrupted["seconds"]
        print(
            f"\n[slurm-requeue] reference {seconds['reference']:.0f} s, SLURM run with two "
            f"interruptions {seconds['slurm']:.0f} s; {interrupted['requeue_note']!r}"
        )
    checkpoint, step = _checkpoint(interrupted["requeue_note"])
    assert SAVE_STEPS <= step < STEPS
    assert interrupted["second_attempt_resumed_from"] == [checkpoint]


def test_a_node_set_down_requeues_the_job_which_resumes(interrupted):
    log = interrupted["controller_log"]
    job = interrupted["record"]["JobId"]
    assert f"requeue job JobId={job} due to failure of node {slurm_cluster.NODE}" in log, log
    first, _ = _checkpoint(interrupted["requeue_note"])
    checkpoint, step = _checkpoint(interrupted["node_down_note"])
    assert int(first.rsplit("-", 1)[1]) < step < STEPS
    assert interrupted["last_attempt_resumed_from"] == [checkpoint]


def test_one_slurm_job_three_attempts_and_the_weights_of_an_uninterrupted_run(interrupted):
    record, output = interrupted["record"], interrupted["output"]
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", record
    assert record["Restarts"] == "2", record
    assert interrupted["controller_log"].count(f"Requeuing JobId={record['JobId']}\n") == 2
    # SLURM requeued the job; Snakemake waited for it: submitted once, never failed or retried
    assert list(slurm_cluster.submitted_jobs(output).values()) == [record["JobId"]], output[-3000:]
    assert "Error in rule" not in output and "Trying to restart" not in output, output[-3000:]
    workdir, reference = interrupted["workdir"], interrupted["reference"]
    _same_weights(workdir / TARGET, reference)
    summaries = [
        json.loads((d / "train_summary.json").read_text()) for d in (workdir / TARGET, reference)
    ]
    assert summaries[0]["global_steps"] == STEPS
    assert _metrics(summaries[0]) == _metrics(summaries[1])
    assert not (workdir / CHECKPOINTS).exists()  # removed after the successful attempt
