"""The container recipe (issue 12): the Dockerfile at the repository root is what
`tools/containerize.py` (`snakemake --containerize` of config/paper.yaml, engines vllm; `make
container`) prints now, so an env file changed without regenerating it fails here; it builds
every env of workflow/envs; and the Snakefile's `containerized:` image is the project's version."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import tomllib
from test_vllm_env import rule_facts

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def containerize() -> str:
    """The recipe as tools/containerize.py prints it from the working tree (no conda needed)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "containerize.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_dockerfile_is_the_recipe_of_the_env_files_as_they_are():
    live, committed = containerize(), DOCKERFILE.read_text()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), live.splitlines(True), "Dockerfile", "containerize"
        )
    )
    assert live == committed, f"Dockerfile is stale: run `make container`\n{diff[:4000]}"


def test_the_image_builds_every_env():
    text = DOCKERFILE.read_text()
    built = set(re.findall(r"^COPY (workflow/envs/[\w-]+\.yaml) /conda-envs/\w+/environment\.yaml$",
                           text, re.M))  # fmt: skip
    envs = {str(p.relative_to(ROOT)) for p in (ROOT / "workflow" / "envs").glob("*.yaml")}
    assert "workflow/envs/vllm.yaml" in envs
    assert built == envs, f"in workflow/envs but not built: {envs - built}; extra: {built - envs}"
    assert text.count("conda env create --prefix /conda-envs/") == len(envs)


def test_the_rules_run_in_the_projects_image(tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    facts = rule_facts(tmp_path, env={"SEKD_IMAGE": ""})
    images = {(fact["container"], fact["containerized"]) for fact in facts.values()}
    assert images == {(f"docker://ghcr.io/sekd/sekd:{version}", True)}
    # SEKD_IMAGE names another (a local .sif, another registry)
    facts = rule_facts(tmp_path, env={"SEKD_IMAGE": "/images/sekd.sif"})
    assert {fact["container"] for fact in facts.values()} == {"/images/sekd.sif"}
