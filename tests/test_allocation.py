"""Every job that loads a model is sized from the plan (sekd.plan.allocation): GPUs per node, nodes,
host memory and wall time, on the cluster profiles/slurm describes; walked over every job of the
paper's plan (Tables 1-3, figures, COMET, the sparse store and its fidelity report), with the
sbatch lines the SLURM plugin writes for them (tools/sbatch_lines.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import load_tool
from test_slurm import paper_profile  # profiles/slurm as Snakemake renders it

from sekd.plan import allocation, sizing
from sekd.plan.config import load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# The paper's study with every model-loading rule in it: the sparse store and its fidelity
# report add teacher_store and store_fidelity_loss to Tables 1-3, the figures and COMET.
STORE = "teacher_store={mode: sparse, fidelity: {objectives: [sekd]}}"
PAPER = ["all", "--config", STORE]

sbatch_lines = load_tool("sbatch_lines")


def paper_config(**overrides) -> dict:
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")
    return validate_config({**config, **overrides}, environ={})


def localrules() -> set[str]:
    text = (ROOT / "workflow" / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
    return {name.strip(" ,") for name in block[1].splitlines()}


@pytest.fixture(scope="module")
def paper_jobs(planning_env, tmp_path_factory) -> list:
    workdir = tmp_path_factory.mktemp("paper-plan")
    return sbatch_lines.plan_jobs(*PAPER, env=planning_env, workdir=str(workdir))


CLUSTER = allocation.Cluster(gpu_mem_gb=80, gpus_per_node=8, gpu_tflops=312)


def test_the_profile_describes_the_cluster_and_sizes_no_model_rule_by_hand():
    profile = paper_profile()
    cluster = allocation.Cluster.from_resources(profile["default-resources"])
    assert cluster.gpu_mem_gb == 80 and cluster.gpus_per_node == 8 and cluster.node_mem_gb
    assert profile["software-deployment-method"] == "conda"
    for rule, resources in profile["set-resources"].items():
        sized = set(allocation.request_keys(rule)) if rule in allocation.MODEL_RULES else set()
        by_hand = sized | {"gpu", "gres", "tasks", "tasks_per_gpu", "nodes", "mem_mb", "runtime"}
        assert not by_hand & set(resources), (rule, resources)


def test_every_rule_that_goes_through_sbatch_loads_a_model():
    """The model-loading rules are the only ones not run on the login node: a GPU request is
    never attached to a rule that does not use it, and no such rule is missed."""
    rules = set(re.findall(r"^rule (\w+):", _all_rules_text(), re.M))
    assert rules - localrules() - {"all"} == set(allocation.MODEL_RULES)


def _all_rules_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))


def test_every_job_that_loads_a_model_is_sized_from_the_plan(paper_jobs):
    config = paper_config(teacher_store={"mode": "sparse", "fidelity": {"objectives": ["sekd"]}})
    cluster = allocation.Cluster.from_resources(paper_profile()["default-resources"])
    seen = set()
    for job in paper_jobs:
        r = job.resources
        if job.rule not in allocation.MODEL_RULES:
            assert not {"gpu", "gres"} & set(r), (job.rule, r)  # no GPU for what loads no model
            continue
        seen.add(job.rule)
        wildcards = SimpleNamespace(**job.wildcards)
        request = allocation.plan_request(config, cluster, job.rule, wildcards)
        assert allocation.gpus_per_node(r) >= 1 and r["nodes"] >= 1, (job.rule, r)
        assert {k: r[k] for k in allocation.request_keys(job.rule)} == request.resources()
        assert r["mem_mb"] == request.mem_mb > 4000 and r["runtime"] == request.runtime >= 30
    assert seen == set(allocation.MODEL_RULES)


def test_multi_node_training_asks_per_node_counts(paper_jobs):
    (job,) = [j for j in paper_jobs if j.rule == "sft" and j.wildcards["model"] == "teacher_l"]
    line = sbatch_lines.sbatch_line(job)
    for option in ("--nodes=2", "--gres=gpu:8", "--ntasks-per-node=8", "--cpus-per-gpu=8"):
        assert option in line.split(), line
    assert "--gpus=" not in line and "--ntasks=" not in line, line
    (decode,) = [j for j in paper_jobs if j.rule == "decode"][:1]
    assert "--gpus=1" in sbatch_lines.sbatch_line(decode).split()


def test_smallest_gpu_count_that_fits_memory_and_time():
    arch = sizing.KNOWN_ARCHS["huggyllama/llama-30b"]

    def estimate(gpus):
        return sizing.training_estimate(arch, gpus, 4, 512, 1e8, None, 312)

    request = allocation.training_request("sft", "teacher_l", estimate, 65e9, CLUSTER)
    assert (request.nodes, request.gpus_per_node) == (2, 8)
    assert estimate(8).total() > CLUSTER.capacity() >= estimate(16).total()
    # a larger GPU holds it on fewer
    h200 = allocation.Cluster(gpu_mem_gb=141, gpus_per_node=8, gpu_tflops=989)
    assert allocation.training_request("sft", "t", estimate, 65e9, h200).gpus == 8
    # a short partition limit buys time with GPUs: more than memory needs
    hurried = allocation.Cluster(gpu_mem_gb=141, max_runtime=240, max_nodes=8)
    fast = allocation.training_request("sft", "t", estimate, 65e9, hurried)
    assert fast.gpus == 32 and fast.nodes == 4 and fast.runtime <= 240
    assert allocation.runtime_minutes(estimate(24).gpu_hours / 24) > 240


def test_a_job_that_cannot_fit_stops_naming_rule_and_model():
    arch = sizing.KNOWN_ARCHS["huggyllama/llama-30b"]
    small = allocation.Cluster(gpu_mem_gb=24, gpus_per_node=8, max_nodes=1)
    with pytest.raises(
        sizing.SizingError, match=r"rule sft, model teacher_l: no GPU count up to 8"
    ):
        allocation.training_request(
            "sft", "teacher_l", lambda g: sizing.training_estimate(arch, g, 4, 512, 0), 0, small
        )
    tight = allocation.Cluster(gpu_mem_gb=80, node_mem_gb=100)
    with pytest.raises(sizing.SizingError, match=r"host memory per node .* node_mem_gb 100"):
        allocation.host_mem_mb(65e9, 8, tight, "sft", "teacher_l")


def test_the_plan_stops_before_any_job_when_a_model_cannot_fit(planning_env, tmp_path):
    cmd = [
        str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path),
        "--profile", str(ROOT / "profiles" / "slurm"),
        "results/models/sft/teacher_l/seed1", "--default-resources", "gpu_mem_gb=24", "max_nodes=1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=planning_env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rule sft, model teacher_l: no GPU count up to 8" in output


def test_an_unknown_architecture_stops_the_plan_instead_of_sending_a_cpu_job():
    config = paper_config()
    config["models"]["student"] = {**config["models"]["student"], "pretrained": "org/unknown-7b"}
    with pytest.raises(sizing.SizingError, match=r"models.student: no architecture known"):
        allocation.plan_request(config, CLUSTER, "sft", SimpleNamespace(model="student"))


@pytest.mark.parametrize(
    "args",
    [["--profile", str(ROOT / "profiles" / "local")], ["--configfile", "config/mini.yaml"]],
    ids=["local", "mini"],
)
def test_no_gpu_request_without_a_described_cluster(tmp_path, args):
    cmd = [str(SNAKEMAKE), "-n", "--forceall", "-s", str(ROOT / "workflow" / "Snakefile")]
    proc = subprocess.run(
        [*cmd, "-d", str(tmp_path), "all", *args], capture_output=True, text=True, cwd=ROOT
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    jobs = sbatch_lines.parse_plan(output)
    assert jobs and "GPU sizing" not in output
    assert not [j for j in jobs if {"gpu", "gres"} & set(j.resources)]


def test_resources_parsing():
    assert allocation.gpus_per_node({"gres": "gpu:8", "nodes": 2}) == 8
    assert allocation.gpus_per_node({"gres": "gpu:a100:4"}) == 4
    assert allocation.gpus_per_node({"gpu": 16, "nodes": 2}) == 8
    assert allocation.gpus_per_node(SimpleNamespace(gpu=1)) == 1
    assert allocation.gpus_per_node({}) == 0
    assert allocation.Cluster.from_resources({"mem_mb": 4000}) is None
    cluster = allocation.Cluster.from_resources({"gpu_mem_gb": 80, "gpus_per_node": "4"})
    assert cluster.gpus_per_node == 4 and cluster.gpu_counts() == [1, 2, 4, 8, 12, 16]
    assert allocation.Cluster(gpu_mem_gb=1, gpus_per_node=6).gpu_counts()[:5] == [1, 2, 4, 6, 12]


def test_wall_time_rounds_up_to_half_hours():
    assert allocation.runtime_minutes(0) == 30
    assert allocation.runtime_minutes(1e-9) == 30  # no extra step for a rounding error
    assert allocation.runtime_minutes(0.01) == 60  # 2 x 0.6 min + 30 min
    assert allocation.runtime_minutes(2.0) == 270  # 2 x 120 + 30


def test_the_profile_runs_every_job_in_its_rules_env(planning_env, tmp_path):
    """profiles/slurm's software-deployment-method: the plan's jobs run in their rules' conda
    envs (the envs of every rule the paper's plan uses), not in the driver's venv."""
    cmd = [
        str(SNAKEMAKE), "--list-conda-envs", "-s", str(ROOT / "workflow" / "Snakefile"),
        "-d", str(tmp_path), "--profile", str(ROOT / "profiles" / "slurm"), "all",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=planning_env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    listed = set(re.findall(r"envs/([\w-]+)\.yaml\s", proc.stdout))
    assert listed == {"train", "comet", "score", "report", "data"}, proc.stdout


class _PlanError(Exception):
    """Stands in for Snakemake's WorkflowError."""


class _Wildcards(dict):
    """Snakemake's wildcards: a mapping whose values are attributes too."""

    __getattr__ = dict.__getitem__


def test_the_sizer_sizes_each_job_once_and_announces_each_rule_and_model_once():
    config = paper_config()
    lines: list[str] = []
    sizer = allocation.Sizer(config, CLUSTER, announce=lines.append, error=_PlanError)
    resources = sizer.resources("decode", mem_mb=1000)
    assert set(resources) == set(allocation.request_keys("decode"))
    wc = _Wildcards(run="sft/teacher", seed="1", evalset="wmt22", direction="de-en")
    values = {key: get(wc) for key, get in resources.items()}
    assert values == sizer.request("decode", wc).resources()
    sizer.request(
        "decode", _Wildcards({**wc, "direction": "cs-en"})
    )  # same rule and model: no new line
    assert len(lines) == 1 and lines[0].startswith("GPU sizing: decode teacher")
    # without a described cluster the rule's CPU defaults stand
    assert allocation.Sizer(config, None).resources("decode", mem_mb=1000) == {"mem_mb": 1000}


def test_a_job_the_sizer_cannot_fit_raises_the_plans_error():
    small = allocation.Cluster(gpu_mem_gb=24, gpus_per_node=8, max_nodes=1)
    sizer = allocation.Sizer(paper_config(), small, error=_PlanError)
    with pytest.raises(_PlanError, match=r"rule sft, model teacher_l"):
        sizer.request("sft", _Wildcards(model="teacher_l", seed="1"))
