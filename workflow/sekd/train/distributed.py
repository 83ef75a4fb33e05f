"""Launching a training job on several processes (torchrun), on one node or across SLURM nodes.

`sekd.train.job.run` trains in its own process when one process without DeepSpeed is asked for (the
miniature). Otherwise it writes the job as JSON and `launch` starts ``torchrun ... -m sekd.train.job
job.json``: directly outside SLURM; inside a SLURM allocation as a job step, ``srun`` starting one
task per node that runs this module (`main`), which reads its node's ``SLURM_NODEID`` and becomes
that node's torchrun agent. docs/deepspeed.md describes the whole path.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed.run as torchrun
import transformers.training_args as training_args
from accelerate.state import PartialState
from accelerate.utils import DistributedType

log = logging.getLogger("sekd.train.distributed")

# Seconds torchrun gives a signalled worker to finish its step and write its checkpoint before it
# sends SIGKILL (its default, 30 s, is too short for a ZeRO-3 checkpoint of a 7B-30B model); more
# than the warning time profiles/slurm asks for (sbatch --signal=USR1@900).
SHUTDOWN_TIMEOUT_S = 1800
# Signals torchrun forwards to its workers; sekd.train.job checkpoints on SIGUSR1, SIGTERM and
# SIGINT.
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
BASE_PORT = 29500  # rendezvous port of a multi-node job: BASE_PORT + SLURM_JOB_ID % 10000


@dataclass(frozen=True)
class Nodes:
    """Where this process sits in a (possibly) multi-node job."""

    count: int = 1
    rank: int = 0
    master: str = "localhost"
    port: int = BASE_PORT
    job_id: str = "local"


def processes_per_node(setting: int | None, asked: int = 0, env: dict | None = None) -> int:
    """Ranks per node: `training.nproc_per_node` if set; else the GPUs SLURM gave this node
    (SLURM_GPUS_ON_NODE), read rather than assumed from the request, which is only used
    outside SLURM or when SLURM does not say (`asked`: GPUs per node the job asked for); else 1."""
    env = os.environ if env is None else env
    if setting:
        return int(setting)
    given = env.get("SLURM_GPUS_ON_NODE", "")
    if given.isdigit() and int(given) > 0:
        if asked and int(given) != asked:
            log.warning(
                "SLURM gave %s GPU(s) on this node, the job asked for %d: one rank per GPU given",
                given,
                asked,
            )
        return int(given)
    return max(1, int(asked or 0))


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``gpu[07-09,12],cpu1`` -> ``gpu07``)."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    first = re.match(r"[^,\[]*(\[[^\]]*\])?[^,]*", nodelist.strip())[0]
    if "[" not in first:
        return first
    prefix, rest = first.split("[", 1)
    ranges, suffix = rest.split("]", 1)
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def allocation_from_scontrol(record: str) -> dict[str, str]:
    """SLURM_NNODES, SLURM_JOB_NUM_NODES, SLURM_JOB_NODELIST, SLURM_CPUS_ON_NODE and, for a GPU
    job, SLURM_GPUS_ON_NODE from a `scontrol -o show job` line (CPUs per node: the job's CPUs
    over its nodes, the same on every node of the allocations the plugin asks for; GPUs per node:
    TresPerNode's gpu count, else TresPerJob's over the nodes)."""
    fields = dict(item.split("=", 1) for item in record.split() if "=" in item)
    try:
        count, cpus, nodelist = int(fields["NumNodes"]), int(fields["NumCPUs"]), fields["NodeList"]
    except (KeyError, ValueError) as error:
        raise RuntimeError(f"scontrol's record of the job lacks {error}: {record!r}") from None
    allocation = {
        "SLURM_NNODES": str(count),
        "SLURM_JOB_NUM_NODES": str(count),
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_CPUS_ON_NODE": str(max(1, cpus // max(1, count))),
    }
    per_node, per_job = _gpu_tres(fields.get("TresPerNode")), _gpu_tres(fields.get("TresPerJob"))
    gpus = per_node or (-(-per_job // max(1, count)) if per_job else 0)
    if gpus:
        allocation["SLURM_GPUS_ON_NODE"] = str(gpus)
    return allocation


def _gpu_tres(tres: str | None) -> int:
    """The GPU count of a TRES list as scontrol prints it (`gres/gpu:8`, `gres:gpu:a100:2`)."""
    for item in (tres or "").split(","):
        match = re.fullmatch(r"gres[/:]gpu(?::[^:,]+)?:(\d+)", item.strip())
        if match:
            return int(match[1])
    return 0


def restore_allocation(env: dict | None = None) -> dict[str, str]:
    """Put the allocation's variables back into a batch step's environment that lost them.

    The SLURM executor's jobstep plugin (0.6) runs every job's command, an `mpi` job's too, with
    each SLURM_* variable removed but the job's id; the batch step of a 2-node job then looks like
    one node (no SLURM_NNODES, SLURM_JOB_NODELIST, SLURM_CPUS_ON_NODE). They are read back from
    slurmctld (`scontrol show job`) and set in `env` (os.environ); returns what was set. Does
    nothing outside a batch step or when SLURM_JOB_NODELIST is there.
    """
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id or env.get("SLURM_STEP_ID") or env.get("SLURM_JOB_NODELIST"):
        return {}
    try:
        record = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(
            f"SLURM job {job_id}: its batch step has no SLURM_JOB_NODELIST and `scontrol show "
            f"job {job_id}` failed ({error}); cannot tell its nodes"
        ) from error
    restored = {k: v for k, v in allocation_from_scontrol(record).items() if k not in env}
    env.update(restored)
    return restored


def slurm_nodes(env: dict | None = None) -> Nodes:
    """The job's nodes from SLURM's environment (one local node outside SLURM)."""
    env = os.environ if env is None else env
    count = int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES") or 1)
    if count <= 1 or not env.get("SLURM_JOB_NODELIST"):
        return Nodes()
    job_id = str(env.get("SLURM_JOB_ID", "0"))
    port = int(env.get("MASTER_PORT") or BASE_PORT + int(re.sub(r"\D", "", job_id) or 0) % 10000)
    return Nodes(
        count=count,
        rank=int(env.get("SLURM_NODEID", 0)),
        master=env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"]),
        port=port,
        job_id=job_id,
    )


def torchrun_has_option(option: str) -> bool:
    """Whether this torch's torchrun takes `option` (--shutdown-timeout came after torch 2.10)."""
    return option in torchrun.get_args_parser()._option_string_actions


def torchrun_argv(job_path: str | Path, nproc: int, nodes: Nodes) -> list[str]:
    """The torchrun command line of one node's agent."""
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        f"--signals-to-handle={FORWARDED_SIGNALS}",
    ]
    if torchrun_has_option("--shutdown-timeout"):
        argv.append(f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}")
    else:  # torch <= 2.10 (the CUDA 12 env): torchrun's fixed 30 s (docs/environments.md)
        log.warning(
            "torchrun of torch %s has no --shutdown-timeout: a signalled worker gets 30 s, not "
            "%d s, to write its checkpoint before SIGKILL",
            torch.__version__,
            SHUTDOWN_TIMEOUT_S,
        )
    if nodes.count == 1:
        argv.append("--standalone")  # c10d rendezvous on a free localhost port
    else:
        argv += [
            f"--nnodes={nodes.count}",
            f"--node-rank={nodes.rank}",
            "--rdzv-backend=static",
            f"--rdzv-endpoint={nodes.master}:{nodes.port}",
            f"--rdzv-id={nodes.job_id}",
        ]
    return [*argv, "-m", "sekd.train.job", str(job_path)]


def in_slurm_batch_step(env: dict | None = None) -> bool:
    """In a SLURM allocation (batch script or salloc) but in no job step, with srun at hand."""
    env = os.environ if env is None else env
    return (
        bool(env.get("SLURM_JOB_ID"))
        and not env.get("SLURM_STEP_ID")
        and bool(shutil.which("srun"))
    )


def srun_argv(node_args: list[str], nodes: Nodes, env: dict) -> list[str]:
    """A job step of one task per node, each starting that node's torchrun agent (`main`)."""
    argv = [
        "srun",
        f"--nodes={nodes.count}",
        f"--ntasks={nodes.count}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--mem=0",  # all of the job's memory on each node (the step gets all its GPUs already)
    ]
    if env.get("SLURM_CPUS_ON_NODE"):
        argv.append(f"--cpus-per-task={env['SLURM_CPUS_ON_NODE']}")
    return [*argv, sys.executable, "-m", "sekd.train.distributed", *node_args]


def worker_env(threads_per_rank: int) -> dict:
    """The environment of torchrun and its workers."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # workflow/, holding sekd/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    # DeepSpeed JIT-compiles its ops on first use (on CPU the shm comm op, ~40 s): cache them once
    # per environment instead of in ~/.cache, which a cluster may wipe or share across versions.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    env["OMP_NUM_THREADS"] = str(threads_per_rank)
    return env


class PreemptedError(RuntimeError):
    """Training stopped on a signal (SIGUSR1, SIGTERM, SIGINT) after writing a checkpoint; a rerun
    resumes from it."""


def launch(
    job,
    nproc: int,
    job_path: Path,
    preempt_marker: Path,
    earlier: Callable[[], int | None] | None = None,
) -> None:
    """Run `job` (a sekd.train.job.TrainJob) on `nproc` ranks per node; raise when it fails.

    The first SIGUSR1 sent to this process is passed on to torchrun (or srun), a SIGTERM or SIGINT
    as SIGTERM (later ones are not: the ranks are stopping); so is one that `earlier` (the signal
    this process caught before, if any) reports once the handlers are in place. torchrun passes it
    to the workers, which checkpoint and stop, and `PreemptedError` is raised here; also when the
    ranks died of it before they could catch it (still importing: nothing to checkpoint).
    """
    nodes = slurm_nodes()
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(asdict(job), indent=1))
    env = worker_env(job.threads)
    argv = _launcher_argv(job_path, nproc, nodes, env)
    log.info("launching %d node(s) x %d rank(s): %s", nodes.count, nproc, " ".join(argv))
    # The ranks write where this process writes (a rule's log: sekd.logs.logged redirects
    # sys.stdout/sys.stderr, which a child process would not inherit).
    streams = {name: _fileno(getattr(sys, name)) for name in ("stdout", "stderr")}
    # In its own session: a Ctrl-C in the terminal (or Snakemake's SIGINT, sekd.train.run_lock)
    # reaches this process only, which passes one signal on; torchrun abandons its wait for the
    # ranks' checkpoint when a second signal arrives. No stdin: srun would forward the terminal's.
    proc = subprocess.Popen(
        argv,
        env=env,
        preexec_fn=_die_with_parent,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        **streams,
    )
    rc, signalled = _wait_passing_signals_on(proc, earlier)
    if rc == 0:
        return
    if preempt_marker.exists():
        raise PreemptedError(preempt_marker.read_text().strip())
    if signalled:
        raise PreemptedError(
            f"{signal.Signals(signalled[0]).name} passed on to the ranks, which exited (torchrun: "
            f"status {rc}) without noting a checkpoint: nothing new was checkpointed; a rerun "
            "resumes from the last complete checkpoint, if any (each rank's output is in the log "
            "above)"
        )
    raise RuntimeError(
        f"torchrun exited with status {rc}"
        + (f" after {signal.Signals(signalled[0]).name}" if signalled else "")
        + " (each rank's traceback is in the log above)"
    )


def _launcher_argv(job_path: Path, nproc: int, nodes: Nodes, env: dict) -> list[str]:
    """The command that starts the ranks: srun (one torchrun agent per node) from a SLURM
    job's batch step, else torchrun on this node; an error for several nodes without srun."""
    if in_slurm_batch_step():
        # A SLURM job's batch step runs on its first node only, and SLURM's warning signal
        # (sbatch --signal=USR1@900) reaches job steps, not the batch step: srun starts one agent
        # per node as a job step.
        return srun_argv([str(job_path), str(nproc)], nodes, env)
    if nodes.count > 1:
        raise RuntimeError(
            f"a {nodes.count}-node job must be launched from its batch step (srun starts a "
            "torchrun agent per node); here SLURM_STEP_ID is set or srun is missing"
        )
    return torchrun_argv(job_path, nproc, nodes)


def _wait_passing_signals_on(
    proc: subprocess.Popen, earlier: Callable[[], int | None] | None = None
) -> tuple[int, list[int]]:
    """Wait for `proc`, passing the first SIGUSR1 on to it as SIGUSR1 and the first SIGTERM or
    SIGINT as SIGTERM (the handlers are this process's while it waits, in the main thread), or
    the one `earlier` reports once they are in place (caught before `proc` started); return its
    exit status and the signals received."""
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)
        name = signal.Signals(signum).name
        if len(signalled) > 1:
            log.warning("got %s: the ranks are already stopping", name)
            return
        log.warning("got %s: passing it on to the ranks", name)
        proc.send_signal(signal.SIGUSR1 if signum == signal.SIGUSR1 else signal.SIGTERM)

    previous = {}
    try:
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    except ValueError:  # not the main thread: torchrun still gets signals sent to the job step
        pass
    caught = earlier() if earlier is not None else None
    if caught is not None and not signalled:
        forward(caught, None)
    try:
        return proc.wait(), signalled
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fileno(stream) -> int | None:
    """The file descriptor behind `stream`, flushed; None (inherit) when it has none."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _die_with_parent() -> None:
    """In the child: get SIGTERM (checkpoint and stop) if the launching process dies."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def accelerate_cpu_shim() -> None:
    """Let accelerate see a multi-process CPU run when DeepSpeed is on (inert with a GPU).

    accelerate 1.15 only picks a distributed backend for DeepSpeed when an accelerator is present;
    on CPU it reports one process, and the Trainer then sizes DeepSpeed's batch for world size 1
    (DeepSpeed asserts ``train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step
    * world_size``). Under torchrun (LOCAL_RANK set) without CUDA this makes accelerate choose gloo
    and MULTI_CPU, as it does for CPU runs without DeepSpeed.
    """
    if torch.cuda.is_available() or "LOCAL_RANK" not in os.environ:
        return
    original = PartialState._prepare_backend
    if getattr(original, "_sekd_shim", False):
        return

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        chosen, distributed_type = original(self, cpu, sagemaker_dp, backend)
        if distributed_type == DistributedType.NO and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            return "gloo", DistributedType.MULTI_CPU
        return chosen, distributed_type

    prepare_backend._sekd_shim = True
    PartialState._prepare_backend = prepare_backend


def bf16_on_cpu(deepspeed: str | None, dtype: str) -> bool:
    """Whether a run without a GPU trains in bf16: only under DeepSpeed, with the model's `dtype`
    bfloat16 and a config whose ``bf16.enabled`` is ``"auto"`` or true (zero3_bf16.json, the
    paper's). DeepSpeed's CPU accelerator runs ZeRO-3 in bf16 (docs/deepspeed.md); without
    DeepSpeed, and under zero3_fp32_cpu.json, a CPU run trains in float32."""
    if not deepspeed or dtype != "bfloat16":
        return False
    try:
        enabled = json.loads(Path(deepspeed).read_text()).get("bf16", {}).get("enabled", False)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"training.deepspeed: cannot read the DeepSpeed config {deepspeed}: {error}"
        ) from error
    return enabled == "auto" or enabled is True


@contextlib.contextmanager
def bf16_without_gpu():
    """While the TrainingArguments of a CPU DeepSpeed run in bf16 (`bf16_on_cpu`) are built,
    transformers' check for a bf16-capable GPU answers yes.

    transformers 4.57 refuses ``bf16=True`` without a GPU unless ``use_cpu=True`` ("Your setup
    doesn't support bf16/gpu."), and ``use_cpu=True`` keeps accelerate from starting DeepSpeed:
    DeepSpeed's comm stays uninitialised and ``zero.Init`` sizes the batch for one rank
    (``train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step * world_size``).
    The check only guards against GPUs without bf16; DeepSpeed's CPU accelerator supports it
    (tests/test_deepspeed.py trains the paper's config this way). Inert when transformers has no
    such check.
    """
    original = getattr(training_args, "is_torch_bf16_gpu_available", None)
    if original is None:
        yield
        return
    training_args.is_torch_bf16_gpu_available = lambda *args, **kwargs: True
    try:
        yield
    finally:
        training_args.is_torch_bf16_gpu_available = original


def teacher_engine(teacher, args):
    """The frozen teacher as an inference-only DeepSpeed engine, partitioned like the student.

    As TRL's GKD trainer does: the Trainer's (processed) DeepSpeed config without optimizer and
    scheduler, with ZeRO-3's bucket sizes set for the teacher's hidden size.
    """
    # deepspeed is optional (training.deepspeed only) and slow to import: imported on use.
    import deepspeed

    config = copy.deepcopy(args.hf_deepspeed_config.config)
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        hidden = getattr(teacher.config, "hidden_size", None) or max(
            getattr(teacher.config, "hidden_sizes", [1024])
        )
        zero["reduce_bucket_size"] = hidden * hidden
        zero["stage3_param_persistence_threshold"] = 10 * hidden
        zero["stage3_prefetch_bucket_size"] = int(0.9 * hidden * hidden)
    else:
        zero["stage"] = 0  # ZeRO-1/2 partition optimizer states only: a frozen model has none
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


def main(argv: list[str] | None = None) -> None:
    """One node's torchrun agent in a SLURM job step: ``python -m sekd.train.distributed job.json
    N``."""
    job_path, nproc = (argv if argv is not None else sys.argv[1:])[:2]
    nodes = slurm_nodes()
    cmd = torchrun_argv(job_path, int(nproc), nodes)
    print(f"node {nodes.rank}/{nodes.count}: {' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
