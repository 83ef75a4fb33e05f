"""A throwaway single-node SLURM cluster on localhost, for tests/test_slurm.py.

munged, slurmctld and slurmd run in the foreground as children of the test process, with every file
they need (munge key and socket, slurm.conf, gres.conf, state, spool, logs, two fake GPU device
nodes) in one directory. The one file outside it is the symlink /etc/slurm/slurm.conf: the jobstep
executor strips SLURM_CONF before its inner `srun`, which then reads the default path.

Every process of the cluster (daemons, job steps, the jobs themselves) carries MARKER=<directory> in
its environment; `stop()` cancels the jobs, ends the daemons by PID, ends any process left with the
marker by PID, and removes the symlink and the directory. It is idempotent and also registered with
atexit, so a failing or interrupted test leaves nothing running.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["munge", "slurm-wlm"]
BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel"]
ETC_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "SEKD_TEST_SLURM_CLUSTER"
PARTITION = "debug"
NODE = "localhost"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def ensure_installed(timeout: float = 900) -> str | None:
    """Install munge and slurm-wlm from Debian when missing; return why not (None when ready)."""
    if os.geteuid() != 0:
        return "needs root (daemons, /etc/slurm/slurm.conf, device nodes)"
    if not missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing_binaries())} missing) and no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The packages' scripts would start system-wide munged/slurmd/slurmctld: forbid it for the
    # install (policy-rc.d exit 101 = "action forbidden"), unless the machine has its own policy.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text(
            "#!/bin/sh\n# tests/slurm_cluster.py: no services during the install\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                return f"`{' '.join(cmd)}` took more than {timeout:.0f} s"
            if proc.returncode != 0:
                return f"`{' '.join(cmd)}` failed: {(proc.stdout + proc.stderr)[-800:]}"
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    missing = missing_binaries()
    return f"still missing after apt-get install: {', '.join(missing)}" if missing else None


def etc_conf_conflict() -> str | None:
    """Why /etc/slurm/slurm.conf cannot be used (None when it is free or a stale test link)."""
    if ETC_CONF.is_symlink():
        target = Path(os.readlink(ETC_CONF))
        if not _controller_alive(target.parent.parent):  # left by a killed test run: replaceable
            return None
        return f"{ETC_CONF} already links to {target}, whose slurmctld runs (another test?)"
    if ETC_CONF.exists():
        return f"{ETC_CONF} exists: this machine has a real SLURM setup, which the test won't touch"
    return None


def _controller_alive(root: Path) -> bool:
    try:
        pid = int((root / "run" / "slurmctld.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_record(line: str) -> dict[str, str]:
    """`scontrol -o show job` line -> {key: value} (values hold no spaces in these tests)."""
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


@dataclass
class Cluster:
    """Node `localhost` with `cpus` CPUs, `mem_mb` MB and `gpus` fake GPUs; partition debug."""

    root: Path
    cpus: int = 2
    mem_mb: int = 4000
    gpus: int = 2
    min_job_age: int = 3600  # s a finished job stays in slurmctld (squeue status, scontrol records)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    linked: bool = False
    stopped: bool = False
    saved_sigterm: object = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this cluster (sbatch, snakemake, squeue)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env.pop("SRUN_CPUS_PER_TASK", None)
        return {**env, "SLURM_CONF": str(self.conf), MARKER: str(self.root)}

    @property
    def gpu_log(self) -> Path:
        """One line per task the cluster started: `job step CUDA_VISIBLE_DEVICES`."""
        return self.root / "log" / "task_gpus.log"

    # -- start ------------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> Cluster:
        t0 = time.monotonic()
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (CI cancelling the run) unwinds like Ctrl-C, so stop() still runs
            self.saved_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        for sub in ("etc", "munge", "state", "spool", "log", "run", "dev"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        self._write_munge_key()
        self._write_gpu_devices()
        self._write_config()
        self._spawn("munged", [
            "munged", "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={self.root / 'munge' / 'munge.key'}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
        ])  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged's socket")
        self._link_etc_conf()
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(self._controller_up, timeout, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", NODE])
        self._wait(self._node_idle, timeout, f"node {NODE} to be idle")
        self.timings["start_s"] = time.monotonic() - t0
        return self

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _write_munge_key(self) -> None:
        key = self.root / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))

    def _write_gpu_devices(self) -> None:
        # gres/gpu needs character devices in File= (plain files or count-only gres: node INVAL).
        for i in range(self.gpus):
            dev = self.root / "dev" / f"gpu{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null

    def _write_config(self) -> None:
        r = self.root
        prolog = r / "etc" / "task_prolog.sh"
        prolog.write_text(
            "#!/bin/sh\n"
            f'echo "$SLURM_JOB_ID ${{SLURM_STEP_ID:-batch}} ${{CUDA_VISIBLE_DEVICES:-none}}"'
            f" >> {self.gpu_log}\n"
        )
        prolog.chmod(0o755)
        gres = f"Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = {
            "ClusterName": "sekdtest",
            "SlurmctldHost": f"{NODE}(127.0.0.1)",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CryptoType": "crypto/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "run" / "slurmctld.pid",
            "SlurmdPidFile": r / "run" / "slurmd.pid",
            "SlurmctldLogFile": r / "log" / "slurmctld.log",
            "SlurmdLogFile": r / "log" / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "TaskProlog": prolog,
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "SchedulerType": "sched/backfill",
            "ReturnToService": 2,
            "MinJobAge": self.min_job_age,
            "DefMemPerCPU": max(100, self.mem_mb // (2 * self.cpus)),
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": r / "log" / "jobcomp.log",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "SlurmdParameters": "config_overrides",  # the node as configured, whatever the host has
            "GresTypes": "gpu",
            "NodeName": f"{NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}"
            f" {gres} State=UNKNOWN",
            "PartitionName": f"{PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        }
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        devices = f"{r / 'dev'}/gpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{r / 'dev'}/gpu0"
        (r / "etc" / "gres.conf").write_text(
            f"NodeName={NODE} Name=gpu File={devices}\n" if self.gpus else ""
        )

    def _link_etc_conf(self) -> None:
        if ETC_CONF.is_symlink():  # a stale link of a killed run (etc_conf_conflict said so)
            ETC_CONF.unlink()
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        ETC_CONF.symlink_to(self.conf)
        self.linked = True

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            start_new_session=True,
        )  # fmt: skip
        out.close()

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}\n{self.logs()}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def _controller_up(self) -> bool:
        return (
            subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=self.env)
            .stdout.strip()
            .endswith("is UP")
        )

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).strip()

    def _node_idle(self) -> bool:
        return self.node_state() == "idle"

    # -- records --------------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, str]]:
        """slurmctld's record of every job (kept MinJobAge seconds after the job ends)."""
        out = self.run("scontrol", "-o", "show", "job", check=False)
        return [parse_record(line) for line in out.splitlines() if line.startswith("JobId=")]

    def job_steps(self) -> list[tuple[str, str, str]]:
        """(job id, step, CUDA_VISIBLE_DEVICES) of every task started, from the TaskProlog."""
        if not self.gpu_log.exists():
            return []
        return [tuple(line.split()) for line in self.gpu_log.read_text().splitlines()]

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, end every process the cluster started, remove what it created."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(Exception):
            if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
                ids = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10).split()
                if ids:
                    self.run("scancel", *ids, check=False, timeout=10)
                    deadline = time.monotonic() + 15
                    while (
                        time.monotonic() < deadline
                        and self.run("squeue", "-h", "-o", "%i", check=False, timeout=10).split()
                    ):
                        time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for pid in marked_processes(str(self.root)):  # job steps or job processes left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.linked and ETC_CONF.is_symlink() and Path(os.readlink(ETC_CONF)) == self.conf:
            ETC_CONF.unlink()
        self.linked = False
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)
        if self.saved_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.saved_sigterm)
            self.saved_sigterm = None


def marked_processes(value: str) -> list[int]:
    """PIDs (not this process) whose environment holds MARKER=value."""
    needle = f"{MARKER}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def submitted_jobs(snakemake_output: str) -> dict[str, str]:
    """{snakemake job id: SLURM job id} from the executor's 'has been submitted' lines."""
    return {m[1]: m[2] for m in SUBMITTED.finditer(snakemake_output)}
