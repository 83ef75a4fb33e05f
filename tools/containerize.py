"""Print the workflow's container recipe (the repository's Dockerfile, `make container`):
`snakemake --containerize` for config/paper.yaml with both generation engines set to vllm, so
that the image holds every rule's conda env, the vLLM env included (docs/environments.md), and
the CUDA 12 variants of the train and vLLM envs (`environment.cuda: "12"`), which the plan of one
config never names beside the CUDA 13 ones: they are added as rules outside the DAG, the way
Snakemake adds the envs of rules past a checkpoint.

Run from the repository root (the Dockerfile's COPY paths are relative to it). Writing the
recipe only reads the env files, but Snakemake asks conda for the platform whose pin files
(<env>.<platform>.pin.txt) apply; the image's platform is linux-64 (condaforge/miniforge3)
whatever the host's, so it is given here instead, and no conda is needed.

    python tools/containerize.py [extra snakemake arguments] > Dockerfile
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

from snakemake.cli import main
from snakemake.deployment import conda
from snakemake.deployment import containerize as containerizing

IMAGE_PLATFORM = "linux-64"
# The engines whose conda env is not the train env (sekd.plan.jobs.Jobs.engine_env): set to vllm so
# that the recipe builds that env too.
ARGS = [
    "--containerize",
    "--configfile",
    "config/paper.yaml",
    "--config",
    "decoding={engine: vllm}",
    "sequences={engine: vllm}",
]


def image_conda() -> conda.Conda:
    """Snakemake's conda front end (one per container image; None: the host's), answering for
    the image: its platform, no conda command run."""
    if not isinstance(getattr(conda.Conda, "instances", None), dict):
        raise RuntimeError(
            "snakemake.deployment.conda.Conda has no `instances` dict: this Snakemake's conda "
            "front end differs from 9.27's; update tools/containerize.py"
        )
    front = object.__new__(conda.Conda)
    front.container_img = None
    front.info = {"platform": IMAGE_PLATFORM, "conda_prefix": "/opt/conda"}
    front.prefix_path = front.info["conda_prefix"]
    front.platform = IMAGE_PLATFORM
    assert front.is_initialized, "Conda.is_initialized no longer means prefix_path is set"
    conda.Conda.instances[None] = front
    return front


# The env files the other value of environment.cuda gives the rules (sekd.plan.jobs.Jobs.gpu_env).
CUDA12_ENVS = ("../envs/train-cu12.yaml", "../envs/vllm-cu12.yaml")


class _WithCuda12:
    """The workflow, as Snakemake's containerize sees it, with one stand-in rule per CUDA 12 env
    file (its conda env relative to the rules' directory, as the rules name theirs)."""

    def __init__(self, workflow):
        self._workflow = workflow

    def __getattr__(self, name):
        return getattr(self._workflow, name)

    @property
    def rules(self):
        rules = list(self._workflow.rules)
        basedir = next(rule.basedir for rule in rules if rule.name == "sft")
        extra = [
            SimpleNamespace(name=f"environment.cuda 12: {env}", conda_env=env, basedir=basedir)
            for env in CUDA12_ENVS
        ]
        return [*rules, *extra]


def with_cuda12_envs() -> None:
    """Snakemake's containerize, given the workflow with the CUDA 12 env files added."""
    original = containerizing.containerize

    def containerize(workflow, dag, fmt="dockerfile"):
        return original(_WithCuda12(workflow), dag, fmt=fmt)

    containerizing.containerize = containerize


if __name__ == "__main__":
    image_conda()
    with_cuda12_envs()
    main([*ARGS, *sys.argv[1:]])
