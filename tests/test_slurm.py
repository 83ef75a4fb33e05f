"""profiles/slurm on a real SLURM cluster: a single node on localhost, started for this module.

The micro study's student SFT -> decode -> BLEU chain runs once with `--profile profiles/slurm`
(plus a test profile that shrinks its per-rule requests to the tiny node) and once with
profiles/local; the training and decoding jobs must go through sbatch, the cheap ones must stay
local, and the BLEU score, hypotheses and model must be identical. Needs root and SLURM (installed
from Debian when missing; skipped when that is impossible). `pytest -m slurm` runs this and
tests/test_slurm_nodes.py (two nodes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster
import yaml
import yte

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CONFIGS = [str(ROOT / "config" / "mini.yaml"), str(ROOT / "tests" / "micro.yaml")]
PROFILE = ROOT / "profiles" / "slurm" / "config.v8+.yaml"
RUN = "sft/student/seed1"
TARGET = f"results/scores/{RUN}/wmt22/en-de.json"
HYPS = f"results/hyps/{RUN}/wmt22/en-de.txt"
MODEL = f"results/models/{RUN}/model.safetensors"
SBATCH_RULES = {"sft", "decode"}  # everything else on the chain is a localrule
TIMEOUT = 480  # s for the SLURM run (50 s on an idle 2-core machine, 110 s under load)

# The test node (2 CPUs, 2 fake GPUs, 4 GB) described to the plan the way profiles/slurm describes
# its nodes: the training and decoding jobs are sized from it by the plan (sekd.plan.allocation), as
# on a real cluster; the rest of the paper's description (GPU memory, FLOP/s) stays.
TEST_NODE = {
    "gpus_per_node": 2, "node_mem_gb": 4, "process_mem_mb": 500, "cpus_per_gpu": 1,
    "max_runtime": 60, "mem_mb": 500, "runtime": 15,
}  # fmt: skip
TEST_SETTINGS = {
    # the nodes run this venv (no conda here): the profile's conda envs are replaced by a method
    # that changes nothing for these rules (none declares envmodules)
    "software-deployment-method": "env-modules",
    "set-threads": {"sft": 1, "kd": 1, "decode": 1},  # as profiles/local: same floating point
    "restart-times": 0,  # fail fast
    # sacct needs slurmdbd (without it sacct exits 1 and the plugin loses the job); squeue works
    # while slurmctld keeps finished jobs: MinJobAge >= 3 x the first status-check delay.
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,
}
# The fake GPUs are a gres without a device: the jobs' GPU check (sekd.gpu_required) would stop
# them, so the tests run them on the CPU with its escape hatch, which logs that it did.
FAKE_GPUS = {"SEKD_GPU_REQUIRED": "skip"}

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


def paper_profile() -> dict:
    """profiles/slurm rendered as Snakemake renders it, without partition/account variables."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SEKD_SLURM_")}
    try:
        with open(PROFILE) as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.environ.update(saved)


def write_test_profile(directory: Path, node: dict = TEST_NODE, overrides: dict | None = None):
    """TEST_SETTINGS, the paper profile's default-resources with the test `node`'s facts, and its
    set-resources updated per rule by `overrides` (a layout the sizing would not choose)."""
    profile = paper_profile()
    set_resources = {rule: dict(r) for rule, r in profile["set-resources"].items()}
    for rule, resources in (overrides or {}).items():
        set_resources[rule] = {**set_resources.get(rule, {}), **resources}
    for resources in set_resources.values():
        resources.pop("slurm_partition", None)
    settings = {
        **TEST_SETTINGS,
        "default-resources": {**profile["default-resources"], **node},
        "set-resources": set_resources,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.v8+.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return directory


def run_snakemake(
    workdir: Path, profiles: list[Path], env: dict, timeout: int, target: str = TARGET,
    prefix: tuple[str, ...] | list[str] = (),
):  # fmt: skip
    """Snakemake on `target` in `workdir` (run through `prefix`, a cluster's namespace); (its
    output, seconds). Killed after `timeout` s."""
    cmd = [
        *prefix, "timeout", "-k", "15", str(timeout), str(SNAKEMAKE),
        *[arg for p in profiles for arg in ("--profile", str(p))],
        "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        target, "--configfile", *CONFIGS,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        output = proc.communicate(timeout=timeout + 60)[0]
    except BaseException:  # interrupted: end the group this call started (timeout, snakemake)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"snakemake exited {proc.returncode}:\n{output[-6000:]}"
    return output, seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from slurm_cluster.serve_one_node(tmp_path_factory, "slurm-cluster")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, alma_mirror):
    workdir = tmp_path_factory.mktemp("local-run")
    env = {**os.environ, "SEKD_DATA_MIRROR": str(alma_mirror)}
    output, seconds = run_snakemake(workdir, [ROOT / "profiles" / "local"], env, 900)
    return workdir, output, seconds


@pytest.fixture(scope="module")
def slurm_run(alma_mirror, cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-run")
    test_profile = write_test_profile(tmp_path_factory.mktemp("slurm-test-profile"))
    env = {**cluster.env, **FAKE_GPUS, "SEKD_DATA_MIRROR": str(alma_mirror)}
    try:
        output, seconds = run_snakemake(workdir, [PROFILE.parent, test_profile], env, TIMEOUT)
    except AssertionError as error:
        logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs)
        raise AssertionError(f"{error}\n{tails}\n{cluster.logs()}") from None
    return workdir, output, seconds


def rule_of(record: dict[str, str]) -> str:
    """The rule of a SLURM job, from the comment the executor gives it (rule_<name>_wildcards_…)."""
    match = re.match(r"rule_([a-z0-9_]+?)(?:_wildcards_|$)", record.get("Comment", ""))
    assert match, f"job {record['JobId']} has no rule comment: {record}"
    return match[1]


def test_training_and_decoding_went_through_sbatch(cluster, slurm_run, capsys):
    workdir, output, seconds = slurm_run
    submitted = slurm_cluster.submitted_jobs(output)
    records = {r["JobId"]: r for r in cluster.jobs()}
    with capsys.disabled():
        up = cluster.timings["start_s"]
        print(f"\n[slurm] cluster up in {up:.1f} s; workflow through SLURM in {seconds:.0f} s")
        for job, slurm_id in submitted.items():
            r = records.get(slurm_id, {})
            print(
                f"[slurm] snakemake job {job} -> SLURM job {slurm_id}: {r.get('Comment')} "
                f"{r.get('JobState')} tasks={r.get('NumTasks')} cpus={r.get('NumCPUs')} "
                f"gres={r.get('TresPerJob')}"
            )
    # every job the cluster ran is one this workflow submitted, and they all succeeded
    assert sorted(records) == sorted(submitted.values()), (submitted, records)
    for record in records.values():
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", record
        assert record["WorkDir"] == str(workdir), record
        job_log = Path(record["StdOut"]).read_text()  # snakemake running the job inside SLURM
        assert f"rule {rule_of(record)}:" in job_log and "1 of 1 steps (100%) done" in job_log
    # exactly the training and decoding jobs went through sbatch, once each; the rest ran locally
    finished = dict(re.findall(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$", output, re.M))
    assert sorted(finished[job] for job in submitted) == sorted(SBATCH_RULES), output[-3000:]
    assert sorted(rule_of(r) for r in records.values()) == sorted(SBATCH_RULES)
    local = {rule for job, rule in finished.items() if job not in submitted}
    assert local == set(re.findall(r"^localrule (\w+):$", output, re.M)), output[-3000:]
    assert {"tokenizer", "init_model", "bleu", "fetch_data"} <= local


def test_requests_are_sized_by_the_plan(cluster, slurm_run):
    """What SLURM allocated is what the plan sized for the test node (sekd.plan.allocation): the
    micro student's SFT on 1 GPU of 1 node (mpi: two tasks, the plugin's minimum, one rank), host
    memory one process with the model (1 GB, rounded up), the wall time the plan's "GPU sizing" line
    says; decoding on one GPU likewise."""
    workdir, output, _ = slurm_run
    by_rule = {rule_of(r): r for r in cluster.jobs()}
    sft, decode = by_rule["sft"], by_rule["decode"]
    assert sft.get("TresPerNode") in ("gres:gpu:1", "gres/gpu:1"), sft
    assert sft["NumTasks"] == "2" and sft["NumNodes"] == "1" and sft["NumCPUs"] == "2", sft
    assert decode["TresPerJob"] in ("gres:gpu:1", "gres/gpu:1") and decode["NumCPUs"] == "1"
    for rule, record in (("sft", sft), ("decode", decode)):
        line = re.search(rf"^GPU sizing: {rule} student: .* on 1 GPU\(s\); host 1 GB per node, "
                         r"(\d+) min,", output, re.M)  # fmt: skip
        assert line, output[-3000:]
        minutes = int(line[1])
        assert record["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", record
        assert record["MinMemoryNode"] == "1000M", record
    # the escape hatch said, in the job's log, that the fake GPU left the job on the CPU
    log = (workdir / f"results/logs/{RUN}.log").read_text()
    assert "SEKD_GPU_REQUIRED=skip: rule sft asked for 1 GPU(s) and runs on the CPU" in log
    # the tasks SLURM started, as its TaskProlog saw them: training ran in the batch step (mpi: no
    # inner srun), decoding in a job step of its own (the jobstep executor's srun), each on GPU 0
    steps = cluster.job_steps()
    assert (sft["JobId"], "batch", "0") in steps, steps
    assert [s for s in steps if s[0] == sft["JobId"] and s[1] != "batch"] == [], steps
    assert (decode["JobId"], "0", "0") in steps, steps


def test_fake_gpus_leave_torch_on_the_cpu(cluster):
    """A gpu=1 task sees CUDA_VISIBLE_DEVICES but no CUDA device: without SEKD_GPU_REQUIRED=skip
    its jobs would stop (sekd.gpu_required), which is why the runs here set it."""
    probe = "import os, torch; print(os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.is_available())"
    out = cluster.run(
        "srun", "-n1", "--gpus=1", "--cpus-per-gpu=1", "--mem=500", "-t", "5",
        sys.executable, "-c", probe, timeout=120,
    )  # fmt: skip
    assert out.split() == ["0", "False"], out


def test_results_equal_a_local_run(slurm_run, local_run):
    slurm_dir, local_dir = slurm_run[0], local_run[0]
    assert json.loads((slurm_dir / TARGET).read_text()) == json.loads(
        (local_dir / TARGET).read_text()
    )
    hyps = (slurm_dir / HYPS).read_text()
    assert hyps == (local_dir / HYPS).read_text() and hyps.strip()
    # the trained weights too (bit-identical here; a tolerance keeps summation-order noise out)
    from safetensors.torch import load_file

    slurm_model, local_model = load_file(slurm_dir / MODEL), load_file(local_dir / MODEL)
    assert slurm_model.keys() == local_model.keys()
    for name, tensor in slurm_model.items():
        assert (tensor - local_model[name]).abs().max().item() <= 1e-6, name


def test_cluster_stops_cleanly(cluster):
    cluster.stop()
    assert slurm_cluster.marked_processes(str(cluster.root)) == []
    assert all(p.poll() is not None for p in cluster.procs.values())
    assert not slurm_cluster.ETC_CONF.is_symlink() and not slurm_cluster.ETC_CONF.exists()
    assert not cluster.root.exists()
