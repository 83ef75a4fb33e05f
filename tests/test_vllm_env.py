"""The vLLM decode env (issue 12): the jobs that generate with `decoding.engine` (decode) or
`sequences.engine` (teacher_outputs) run in workflow/envs/vllm.yaml under vllm and in the train
env under hf, and that env's lock (requirements/vllm.txt) pins vLLM on the train env's torch and
transformers (requirements/train.txt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_tool

locks = load_tool("locks")
ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
ENVS = ROOT / "workflow" / "envs"

# Parses the workflow (no DAG) and prints each rule's conda env (resolved against the file that
# defines the rule) and container image, as JSON. In a process of its own: the Snakemake API
# changes directory and its logging state.
_RULE_FACTS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, configfile, overrides = sys.argv[1:5]
with SnakemakeApi(OutputSettings(quiet=None)) as api:
    workflow_api = api.workflow(
        ResourceSettings(),
        ConfigSettings(configfiles=[Path(configfile)], config=json.loads(overrides)),
        snakefile=Path(snakefile),
        workdir=Path(workdir),
    )
    workflow = workflow_api._workflow  # parsed, no DAG
    facts = {
        rule.name: {
            "conda_env": (
                str((Path(rule.snakefile).parent / rule.conda_env).resolve())
                if rule.conda_env else None
            ),
            "container": rule.container_img,
            "containerized": rule.is_containerized,
        }
        for rule in workflow.rules
    }
print(json.dumps(facts))
"""


def rule_facts(
    tmp_path: Path,
    overrides: dict | None = None,
    configfile: str = "config/mini.yaml",
    env: dict[str, str] | None = None,
) -> dict[str, dict]:
    """{rule: {conda_env, container, containerized}} of the workflow parsed with `configfile` and
    the `--config` `overrides`."""
    cmd = [
        sys.executable, "-c", _RULE_FACTS, str(ROOT / "workflow" / "Snakefile"), str(tmp_path),
        str(ROOT / configfile), json.dumps(overrides or {}),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


ENGINES = [
    ({"decoding": "hf", "sequences": "hf"}, {"decode": "train", "teacher_outputs": "train"}),
    ({"decoding": "vllm", "sequences": "hf"}, {"decode": "vllm", "teacher_outputs": "train"}),
    ({"decoding": "hf", "sequences": "vllm"}, {"decode": "train", "teacher_outputs": "vllm"}),
]


@pytest.mark.parametrize(("engines", "expected"), ENGINES, ids=["hf", "decoding-vllm", "seq-vllm"])
def test_generating_jobs_run_in_the_env_of_their_engine(tmp_path, engines, expected):
    overrides = {section: {"engine": engine} for section, engine in engines.items()}
    facts = rule_facts(tmp_path, overrides)
    for rule, env in expected.items():
        assert facts[rule]["conda_env"] == str(ENVS / f"{env}.yaml"), (rule, engines, facts[rule])
    # the engine moves no other rule: training, scoring and COMET keep their envs
    for rule, env in {"sft": "train", "kd": "train", "comet": "comet", "bleu": "score"}.items():
        assert facts[rule]["conda_env"] == str(ENVS / f"{env}.yaml"), (rule, facts[rule])
    for rule, fact in facts.items():
        assert fact["conda_env"] is None or Path(fact["conda_env"]).is_file(), (rule, fact)


def test_the_vllm_lock_pins_vllm_on_the_train_envs_torch_and_transformers():
    """Hashes and the env file written from this lock: tests/test_envs.py, as for every env."""
    lock = locks.read_lock(locks.lock_path("vllm"))
    train = locks.read_lock(locks.lock_path("train"))
    assert lock["vllm"].version == locks.read_in(REQUIREMENTS / "vllm.in")["vllm"]
    for name in ("torch", "transformers", "tokenizers", "safetensors", "accelerate"):
        assert lock[name].version == train[name].version, (name, lock[name], train[name])


# Every rule that runs in the train or vLLM env, and the env file each environment.cuda gives it.
GPU_RULES = (
    "tokenizer",
    "init_model",
    "pretrain",
    "sft",
    "kd",
    "teacher_store",
    "store_fidelity_loss",
    "fit",
)
CUDA = {
    "13": {"train": "train", "vllm": "vllm"},
    "12": {"train": "train-cu12", "vllm": "vllm-cu12"},
}


@pytest.mark.parametrize("cuda", sorted(CUDA))
@pytest.mark.parametrize(("engines", "expected"), ENGINES, ids=["hf", "decoding-vllm", "seq-vllm"])
def test_environment_cuda_picks_the_variant_of_every_gpu_env(tmp_path, cuda, engines, expected):
    """environment.cuda is the one switch: under "12" every rule of the train env and both
    generating rules run in the CUDA 12 files, under "13" (the default) in train.yaml and vllm.yaml;
    no other rule moves."""
    overrides = {section: {"engine": engine} for section, engine in engines.items()}
    overrides["environment"] = {"cuda": cuda}
    facts = rule_facts(tmp_path, overrides)
    default = rule_facts(tmp_path, {section: {"engine": e} for section, e in engines.items()})
    wanted = {rule: "train" for rule in GPU_RULES} | expected
    for rule, env in wanted.items():
        assert rule in facts, f"no rule {rule}"
        file = str(ENVS / f"{CUDA[cuda][env]}.yaml")
        assert facts[rule]["conda_env"] == file, (rule, cuda, engines, facts[rule])
    used = {fact["conda_env"] for fact in facts.values()}
    assert not {str(ENVS / f"{CUDA[other][e]}.yaml") for other in CUDA if other != cuda
                for e in ("train", "vllm")} & used  # fmt: skip
    for rule, fact in facts.items():
        if rule not in wanted:
            assert fact["conda_env"] == default[rule]["conda_env"], (rule, cuda)
        assert fact["conda_env"] is None or Path(fact["conda_env"]).is_file(), (rule, fact)
    if cuda == "13":
        assert facts == default, "environment.cuda defaults to 13"


def test_the_cu12_locks_pin_torch_2_10_and_vllm_on_the_train_versions():
    """The CUDA 12 variant: train-cu12 is train.in with torch 2.10.0; vllm-cu12 carries its torch
    and the train env's transformers stack."""
    train, train12 = (locks.read_in(REQUIREMENTS / f"{n}.in") for n in ("train", "train-cu12"))
    assert train12.pop("torch") == "2.10.0"
    train.pop("torch")
    assert train12 == train
    lock12, vllm12 = (locks.read_lock(locks.lock_path(n)) for n in ("train-cu12", "vllm-cu12"))
    for name in ("torch", "transformers", "tokenizers", "safetensors", "accelerate"):
        assert vllm12[name].version == lock12[name].version, (name, vllm12[name], lock12[name])
    assert vllm12["vllm"].version == locks.read_in(REQUIREMENTS / "vllm-cu12.in")["vllm"]
