"""Hash-locked environments: `requirements/<env>.in` (direct pins) -> `requirements/<env>.txt`.

Every env has one lock, made by ``uv pip compile --generate-hashes`` and installed with ``pip
install --require-hashes``. Deployment envs (the driver on the login node, and the rules' conda envs
train, comet, vllm, report, score, data) are resolved for the cluster: Linux x86_64, Python 3.11,
torch from PyPI with its CUDA libraries. Test venvs (dev, comet-dev, tf4) are resolved for this
machine's CPU torch wheel; dev and comet-dev are constrained to the versions of the deployment envs
they test (tests/test_envs.py checks they agree, CUDA-only packages aside). The conda env files
(workflow/envs/<env>.yaml) are written from the locks, so the hashes travel into the rules' envs and
the container recipe (Dockerfile, `snakemake --containerize`).

`python -m sekd.locks compile [ENV ...]` re-resolves (needs PyPI); `python -m sekd.locks envs`
rewrites the conda env files from the locks (offline). `make locks` does both.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
CONDA_ENVS = ROOT / "workflow" / "envs"
PYTHON = "3.11"
CLUSTER_PLATFORM = "x86_64-manylinux_2_28"
PYPI = "https://pypi.org/simple"
LOCAL_WHEELS = "/opt/wheels"  # where this machine keeps its CPU torch wheel


@dataclass(frozen=True)
class Env:
    """One environment: its lock's name, whether it is resolved for this machine's CPU torch, the
    lock whose versions constrain it, and whether a rule's conda env file is written from it."""

    name: str
    cpu: bool = False
    constrained_by: str | None = None
    conda: bool = False


# In resolution order: a constraining lock comes before the locks it constrains.
ENVS = (
    Env("dev", cpu=True),
    Env("comet-dev", cpu=True),
    Env("tf4", cpu=True),
    Env("driver", constrained_by="dev"),
    Env("train", constrained_by="dev", conda=True),
    Env("report", constrained_by="dev", conda=True),
    Env("score", constrained_by="dev", conda=True),
    Env("data", constrained_by="dev", conda=True),
    Env("comet", constrained_by="comet-dev", conda=True),
    # numpy differs from train (vLLM 0.32 needs < 2.4): tests/test_vllm_env.py compares the rest
    Env("vllm", conda=True),
)
BY_NAME = {env.name: env for env in ENVS}
# Packages only a CUDA build of torch (or vLLM) pulls in: absent from the CPU test venvs.
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$|cupy|xformers$|flashinfer)")
# The deployment env each test venv stands for (same versions, CPU torch).
TESTED_BY = {"dev": ("driver", "train", "report", "score", "data"), "comet-dev": ("comet",)}

_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """A locked requirement: version and the sha256 of every file pip may install for it."""

    version: str
    hashes: tuple[str, ...]


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, Pin]:
    """{name: Pin} of a uv-compiled lock (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _REQUIREMENT.match(line)
        if not match:
            raise ValueError(f"{path}: not a pinned requirement: {line!r}")
        pins[canonical(match[1])] = Pin(match[2], tuple(_HASH.findall(line)))
    return pins


def read_in(path: Path) -> dict[str, str]:
    """{name: version} of a `.in` file's own pins (its `-r` includes followed)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(read_in(path.parent / line[3:].strip()))
        elif line:
            match = _REQUIREMENT.match(line)
            if not match:
                raise ValueError(f"{path}: pin with ==, got {line!r}")
            pins[canonical(match[1])] = match[2]
    return pins


def public_version(version: str) -> str:
    """2.13.0+cpu -> 2.13.0: the release a local build stands for."""
    return version.split("+", 1)[0]


def constraints(lock: dict[str, Pin]) -> str:
    """A constraints file holding a lock's versions (local labels dropped: the cluster takes the
    release from PyPI)."""
    return "".join(f"{name}=={public_version(pin.version)}\n" for name, pin in sorted(lock.items()))


def lock_path(name: str) -> Path:
    return REQUIREMENTS / f"{name}.txt"


def compile_env(env: Env, uv: str = "uv") -> None:
    """Resolve requirements/<env>.in into its hash-locked requirements/<env>.txt with uv."""
    source = REQUIREMENTS / f"{env.name}.in"
    cmd = [uv, "pip", "compile", source.name, "-o", lock_path(env.name).name, "--generate-hashes"]
    cmd += ["--python-version", PYTHON, "--python-platform", CLUSTER_PLATFORM, "--index-url", PYPI]
    cmd += ["--custom-compile-command", f"make locks  # python -m sekd.locks compile {env.name}"]
    if env.cpu:
        cmd += ["--find-links", LOCAL_WHEELS]
    with tempfile.TemporaryDirectory() as tmp:
        if env.constrained_by:
            pinned = Path(tmp) / "constraints.txt"
            pinned.write_text(constraints(read_lock(lock_path(env.constrained_by))))
            cmd += ["--constraint", str(pinned)]
        subprocess.run(cmd, cwd=REQUIREMENTS, check=True)


def conda_env_text(name: str) -> str:
    """workflow/envs/<name>.yaml: Python and pip from conda-forge, every package from the lock,
    hash-checked (pip enters --require-hashes mode as soon as one line carries a hash)."""
    lines = [
        f"# Generated from requirements/{name}.txt by `make locks` (python -m sekd.locks envs);",
        "# do not edit: change requirements/" + f"{name}.in and regenerate.",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
    ]
    for package, pin in sorted(read_lock(lock_path(name)).items()):
        hashes = " ".join(f"--hash={digest}" for digest in pin.hashes)
        lines.append(f"      - {package}=={pin.version} {hashes}")
    return "\n".join(lines) + "\n"


def write_conda_envs() -> list[Path]:
    written = []
    for env in ENVS:
        if env.conda and lock_path(env.name).is_file():
            path = CONDA_ENVS / f"{env.name}.yaml"
            path.write_text(conda_env_text(env.name))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekd.locks", description=__doc__)
    parser.add_argument("action", choices=("compile", "envs"))
    parser.add_argument("envs", nargs="*", help="compile only these (default: all, in order)")
    parser.add_argument("--uv", default="uv", help="the uv executable")
    args = parser.parse_args(argv)
    if args.action == "compile":
        unknown = set(args.envs) - set(BY_NAME)
        if unknown:
            parser.error(f"unknown env(s) {sorted(unknown)}; known: {sorted(BY_NAME)}")
        for env in ENVS:
            if not args.envs or env.name in args.envs:
                print(f"locking {env.name}", file=sys.stderr)
                compile_env(env, args.uv)
    for path in write_conda_envs():
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
