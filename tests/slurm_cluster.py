"""A throwaway SLURM cluster, for tests/test_slurm.py (one node on localhost) and
tests/test_slurm_nodes.py (two nodes, each in a network namespace of its own).

munged, slurmctld and slurmd run in the foreground as children of the test process, with every file
they need (munge key and socket, slurm.conf, gres.conf, state, spool, logs, two fake GPU device
nodes) in one directory. The one file outside it is the symlink /etc/slurm/slurm.conf: the jobstep
executor strips SLURM_CONF before its inner `srun`, which then reads the default path.

Every process of the cluster (daemons, job steps, the jobs themselves) carries MARKER=<directory> in
its environment; `stop()` cancels the jobs, ends the daemons by PID, ends any process left with the
marker by PID, and removes the symlink and the directory. It is idempotent and also registered with
atexit, so a failing or interrupted test leaves nothing running.

With `namespaced_nodes(root, 2)` the cluster is two nodes, node1 and node2, each a network
namespace that `start()` makes (`ip netns add`) and joins to the other by one veth pair (10.213.0.1
and 10.213.0.2/24, `lo` up in each; no route anywhere else, so nothing the cluster runs can reach
another address). Each node's daemons run with its hostname (a UTS namespace: `hostname` in a task
names its node) and its /etc/hosts and /etc/resolv.conf (/etc/netns/<ns>/, bound in a mount
namespace of their own): the node names resolve to the veth addresses, other names nowhere.
slurmctld and node1's slurmd run in node1's namespace, node2's slurmd in node2's; munged stays
outside (its socket is a file in the shared directory, which a network namespace does not hide).
Commands that talk to the cluster run in node1's namespace (`Cluster.prefix`, `ip netns exec`): it
is the login node. `stop()` also deletes the namespaces (and with them the veth pair) and their
/etc/netns directories; `start()` first deletes those a killed run left (no process in them).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
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
NETNS_PACKAGES = ["iproute2"]  # `ip` (namespaces, veth); `unshare`, `nsenter`: util-linux
NETNS_BINARIES = ["ip", "unshare", "nsenter"]
ETC_CONF = Path("/etc/slurm/slurm.conf")
ETC_NETNS = Path("/etc/netns")  # /etc/netns/<ns>/<file> replaces /etc/<file> in `ip netns exec`
MARKER = "SEKD_TEST_SLURM_CLUSTER"
PARTITION = "debug"
NODE = "localhost"
NETNS_PREFIX = "sekd-slurm-"  # of the namespaces a cluster makes (stale ones are removed)
SUBNET = "10.213.0"  # private /24 of the veth pair; node i gets SUBNET.i
VETH = "sekd0"  # the veth end's name inside each namespace


@dataclass(frozen=True)
class Node:
    """A SLURM node: its name, the address its daemons listen on, its network namespace (None:
    this process's)."""

    name: str = NODE
    addr: str = "127.0.0.1"
    netns: str | None = None


def namespaced_nodes(root: Path, count: int = 2) -> tuple[Node, ...]:
    """`count` nodes node1..nodeN at SUBNET.1.., each in a namespace named after `root`."""
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return tuple(
        Node(f"node{i}", f"{SUBNET}.{i}", f"{NETNS_PREFIX}{tag}-{i}") for i in range(1, count + 1)
    )


def missing_binaries(netns: bool = False) -> list[str]:
    wanted = BINARIES + (NETNS_BINARIES if netns else [])
    return [b for b in wanted if shutil.which(b) is None]


def ensure_installed(timeout: float = 900, netns: bool = False) -> str | None:
    """Install munge and slurm-wlm (and iproute2 with `netns`) from Debian when missing; return
    why not (None when ready)."""
    if os.geteuid() != 0:
        return "needs root (daemons, /etc/slurm/slurm.conf, device nodes, network namespaces)"
    if not missing_binaries(netns):
        return None
    if shutil.which("apt-get") is None:
        return f"not installed ({', '.join(missing_binaries(netns))} missing) and no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The packages' scripts would start system-wide munged/slurmd/slurmctld: forbid it for the
    # install (policy-rc.d exit 101 = "action forbidden"), unless the machine has its own policy.
    packages = PACKAGES + (NETNS_PACKAGES if netns else [])
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
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
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
    missing = missing_binaries(netns)
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
    """`nodes` (default: `localhost`), each with `cpus` CPUs, `mem_mb` MB and `gpus` fake GPUs;
    partition debug. slurmctld runs beside the first node's slurmd."""

    root: Path
    cpus: int = 2
    mem_mb: int = 4000
    gpus: int = 2
    min_job_age: int = 3600  # s a finished job stays in slurmctld (squeue status, scontrol records)
    nodes: tuple[Node, ...] = (Node(),)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)  # the network namespaces start() made
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

    @property
    def node_log(self) -> Path:
        """One line per task: `job step SLURMD_NODENAME hostname network-namespace` (`-`: none)."""
        return self.root / "log" / "task_nodes.log"

    @property
    def controller(self) -> Node:
        return self.nodes[0]

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a command where the controller is (its namespace)."""
        netns = self.controller.netns
        return ["ip", "netns", "exec", netns] if netns else []

    # -- start ------------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> Cluster:
        t0 = time.monotonic()
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (CI cancelling the run) unwinds like Ctrl-C, so stop() still runs
            self.saved_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        self._make_network()
        for sub in ("etc", "munge", "state", "log", "run", "dev"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            (self.root / "spool" / node.name).mkdir(parents=True, exist_ok=True)
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
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)], self.controller)
        self._wait(self._controller_up, timeout, "slurmctld to answer")
        for node in self.nodes:
            cmd = ["slurmd", "-D", "-f", str(self.conf), "-N", node.name]
            self._spawn(f"slurmd-{node.name}", cmd, node)
        names = ", ".join(n.name for n in self.nodes)
        self._wait(self._nodes_idle, timeout, f"node(s) {names} to be idle")
        self.timings["start_s"] = time.monotonic() - t0
        return self

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _make_network(self) -> None:
        """The nodes' network namespaces, the veth pair between them, their /etc/hosts."""
        spaced = [n for n in self.nodes if n.netns]
        if not spaced:
            return
        if len(spaced) != 2 or len(self.nodes) != 2:
            raise ValueError(f"namespaced nodes come in one pair (one veth): {self.nodes}")
        remove_stale_namespaces()
        hosts = "127.0.0.1 localhost\n" + "".join(f"{n.addr} {n.name}\n" for n in self.nodes)
        for node in spaced:
            _ip("netns", "add", node.netns)
            self.namespaces.append(node.netns)
            etc = ETC_NETNS / node.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            # no name server: a lookup that /etc/hosts does not answer asks 127.0.0.1 and fails
            (etc / "resolv.conf").write_text("# tests/slurm_cluster.py: /etc/hosts only\n")
        a, b = spaced
        _ip("link", "add", VETH, "netns", a.netns, "type", "veth", "peer", "name", VETH, "netns",
            b.netns)  # fmt: skip
        for node in spaced:
            _ip("-n", node.netns, "link", "set", "lo", "up")
            _ip("-n", node.netns, "addr", "add", f"{node.addr}/24", "dev", VETH)
            _ip("-n", node.netns, "link", "set", VETH, "up")

    def _remove_network(self) -> None:
        for netns in self.namespaces:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
            shutil.rmtree(ETC_NETNS / netns, ignore_errors=True)
        if self.namespaces:
            with contextlib.suppress(OSError):
                ETC_NETNS.rmdir()  # only when no other namespace has files there
        self.namespaces.clear()

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
            'step="$SLURM_JOB_ID ${SLURM_STEP_ID:-batch}"\n'
            f'echo "$step ${{CUDA_VISIBLE_DEVICES:-none}}" >> {self.gpu_log}\n'
            "netns=$(ip netns identify 2>/dev/null)\n"
            f'echo "$step $SLURMD_NODENAME $(hostname) ${{netns:--}}" >> {self.node_log}\n'
        )
        prolog.chmod(0o755)
        gres = f"Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = {
            "ClusterName": "sekdtest",
            "SlurmctldHost": f"{self.controller.name}({self.controller.addr})",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CryptoType": "crypto/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": r / "state",
            # %n: the node's name, so that the nodes' slurmd share no file (a slurmd that finds
            # another one's live PID in its pid file kills it)
            "SlurmdSpoolDir": r / "spool" / "%n",
            "SlurmctldPidFile": r / "run" / "slurmctld.pid",
            "SlurmdPidFile": r / "run" / "slurmd-%n.pid",
            "SlurmctldLogFile": r / "log" / "slurmctld.log",
            "SlurmdLogFile": r / "log" / "slurmd-%n.log",
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
        }
        names = ",".join(n.name for n in self.nodes)
        nodes = [
            f"NodeName={n.name} NodeAddr={n.addr} CPUs={self.cpus} RealMemory={self.mem_mb}"
            f" {gres} State=UNKNOWN"
            for n in self.nodes
        ]
        partition = f"PartitionName={PARTITION} Nodes={names} Default=YES MaxTime=INFINITE State=UP"
        config = [f"{k}={v}" for k, v in lines.items()] + nodes + [partition]
        self.conf.write_text("".join(f"{line}\n" for line in config))
        devices = f"{r / 'dev'}/gpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{r / 'dev'}/gpu0"
        # the nodes share the fake devices (each node's slurmd hands out its own `gpus` of them)
        (r / "etc" / "gres.conf").write_text(
            "".join(f"NodeName={n.name} Name=gpu File={devices}\n" for n in self.nodes)
            if self.gpus
            else ""
        )

    def _link_etc_conf(self) -> None:
        if ETC_CONF.is_symlink():  # a stale link of a killed run (etc_conf_conflict said so)
            ETC_CONF.unlink()
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        ETC_CONF.symlink_to(self.conf)
        self.linked = True

    def _spawn(self, name: str, cmd: list[str], node: Node | None = None) -> None:
        """Start a daemon; on a namespaced `node`, in its network namespace with its hostname and
        /etc/hosts and /etc/resolv.conf (its mount namespace binds those of /etc/netns/<ns>/).

        Not `ip netns exec`, which mounts a fresh /sys that hides /sys/fs/cgroup, without which
        slurmd won't start. `nsenter`, `unshare` and `sh` exec in turn: the PID is the daemon's.
        """
        if node is not None and node.netns:
            etc = ETC_NETNS / node.netns
            cmd = [
                "nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--mount", "--uts", "--",
                "sh", "-c", 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf'
                ' && hostname "$0" && shift 2 && exec "$@"',
                node.name, str(etc / "hosts"), str(etc / "resolv.conf"), *cmd,
            ]  # fmt: skip
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
        """`cmd` beside the controller (in its namespace, if it has one); its output."""
        cmd = (*self.prefix, *cmd)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def _controller_up(self) -> bool:
        return self.run("scontrol", "ping", check=False).strip().endswith("is UP")

    def node_states(self) -> dict[str, str]:
        """{node: state} as sinfo reports them."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False)
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def _nodes_idle(self) -> bool:
        return self.node_states() == {n.name: "idle" for n in self.nodes}

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

    def task_nodes(self) -> list[tuple[str, str, str, str, str]]:
        """(job id, step, node name, hostname, network namespace or `-`) of every task started,
        from the TaskProlog."""
        if not self.node_log.exists():
            return []
        return [tuple(line.split()) for line in self.node_log.read_text().splitlines()]

    def logs(self, chars: int = 3000) -> str:
        parts = []
        daemons = ["munged", "slurmctld", *(f"slurmd-{n.name}" for n in self.nodes)]
        for name in [f"{d}.log" for d in daemons] + [f"{d}.out" for d in daemons[1:]]:
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
        for name in [*(f"slurmd-{n.name}" for n in self.nodes), "slurmctld", "munged"]:
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
        self._remove_network()
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)
        if self.saved_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.saved_sigterm)
            self.saved_sigterm = None


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} -> {proc.returncode}: {proc.stderr.strip()}")


def cluster_namespaces() -> list[str]:
    """The network namespaces a cluster of this module made (by their name), live or stale."""
    if shutil.which("ip") is None:
        return []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]


def remove_stale_namespaces() -> None:
    """Delete this module's namespaces that no process is in (left by a killed test run)."""
    for netns in cluster_namespaces():
        pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
        if pids.returncode == 0 and not pids.stdout.split():
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
            shutil.rmtree(ETC_NETNS / netns, ignore_errors=True)


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


def serve(cluster: Cluster):
    """A module fixture's body: start the cluster, yield it, stop it (also when a test fails)."""
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def serve_one_node(tmp_path_factory, name: str):
    """A module fixture's body for the one-node cluster (2 fake GPUs) in a fresh `name` folder:
    skips the module when SLURM cannot run here, else `serve`s it."""
    import pytest

    reason = ensure_installed() or etc_conf_conflict()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    yield from serve(Cluster(tmp_path_factory.mktemp(name), gpus=2))
