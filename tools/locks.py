"""Hash-locked environments: `requirements/<env>.in` (direct pins) -> `requirements/<env>.txt`.

Every env has one lock, made by ``uv pip compile --generate-hashes`` and installed with ``pip
install --require-hashes``. Deployment envs (the driver on the login node, and the rules' conda envs
train, comet, vllm, report, score, data, and the CUDA 12 variants train-cu12, vllm-cu12) are
resolved for the cluster: Linux x86_64, Python 3.11, torch from PyPI with its CUDA libraries. Test
venvs (dev, comet-dev, tf4) are resolved from PyPI alone for every platform at once
(``--universal``: one lock whose environment markers say which package each platform installs), so
that `make venv` works on Linux x86_64 and aarch64 and on macOS arm64 (tests/test_lock_platforms.py
checks PyPI has a hashed file for each). Each test lock has a derived twin, ``<env>-cpu.txt``: the
same lock with torch replaced by this machine's local CPU wheel (LOCAL_TORCH) and the CUDA-only
packages dropped, which the Makefile installs only where that wheel lies in PIP_FIND_LINKS (CI: no
multi-GB CUDA download). dev and comet-dev are constrained to the versions of the deployment envs
they test (tests/test_envs.py checks they agree). The conda env files (workflow/envs/<env>.yaml) are
written from the locks, so the hashes travel into the rules' envs and the container recipe
(Dockerfile, `snakemake --containerize`).

`python tools/locks.py compile [ENV ...]` re-resolves (needs PyPI) and rewrites the derived CPU
locks; `python tools/locks.py envs` rewrites the derived locks and the conda env files from the
locks (offline). `make locks` does both.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
CONDA_ENVS = ROOT / "workflow" / "envs"
PYTHON = "3.11"
CLUSTER_PLATFORM = "x86_64-manylinux_2_28"
PYPI = "https://pypi.org/simple"
# This machine's (and CI's) CPU build of torch, in its wheel directory (PIP_FIND_LINKS): the derived
# `<env>-cpu.txt` locks take it instead of PyPI's torch. Not on PyPI; no lock depends on it.
LOCAL_TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
LOCAL_TORCH = (
    "2.13.0+cpu",
    "sha256:6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b",
)


@dataclass(frozen=True)
class Env:
    """One environment: its lock's name, whether it is a test venv resolved from PyPI for every
    platform (with a derived CPU lock beside it), the lock whose versions constrain it, and whether
    a rule's conda env file is written from it."""

    name: str
    universal: bool = False
    constrained_by: str | None = None
    conda: bool = False


# In resolution order: a constraining lock comes before the locks it constrains.
ENVS = (
    Env("dev", universal=True),
    Env("comet-dev", universal=True),
    Env("tf4", universal=True),
    Env("driver", constrained_by="dev"),
    Env("train", constrained_by="dev", conda=True),
    Env("report", constrained_by="dev", conda=True),
    Env("score", constrained_by="dev", conda=True),
    Env("data", constrained_by="dev", conda=True),
    Env("comet", constrained_by="comet-dev", conda=True),
    # numpy differs from train (vLLM 0.32 needs < 2.4): tests/test_vllm_env.py compares the rest
    Env("vllm", conda=True),
    # The CUDA 12 variants (environment.cuda: "12"): torch 2.10.0, the newest PyPI build on CUDA 12
    Env("train-cu12", conda=True),
    Env("vllm-cu12", conda=True),
    # `make test-cu12`: the train-cu12 versions plus pytest
    Env("cu12-dev", constrained_by="train-cu12"),
)
BY_NAME = {env.name: env for env in ENVS}
# Packages only a CUDA build of torch (or vLLM) pulls in: dropped from the derived CPU locks.
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$|cupy|xformers$|flashinfer)")
# The deployment env each test venv stands for (same versions).
TESTED_BY = {
    "dev": ("driver", "train", "report", "score", "data"),
    "comet-dev": ("comet",),
    "cu12-dev": ("train-cu12",),
}

_REQUIREMENT = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*(?:\\|--hash|$)"
)
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Pin:
    """A locked requirement: version, the sha256 of every file pip may install for it, and the
    environment marker under which it is installed (None: everywhere)."""

    version: str
    hashes: tuple[str, ...]
    marker: str | None = None

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        """Whether pip installs it in `environment` (PEP 508 marker variables; default: here)."""
        if self.marker is None:
            return True
        from packaging.markers import Marker

        return Marker(self.marker).evaluate(environment)


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
        name = canonical(match[1])
        if name in pins:
            raise ValueError(f"{path}: {name} is pinned twice (a forked resolution)")
        pins[name] = Pin(match[2], tuple(_HASH.findall(line)), match[3] or None)
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


# PEP 508 marker variables of the cluster (Linux x86_64, CPython 3.11): which pins of a universal
# lock constrain the cluster's envs.
CLUSTER_MARKERS = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "implementation_version": "3.11.7",
    "platform_release": "",
    "platform_version": "",
    "extra": "",
}


def constraints(lock: dict[str, Pin]) -> str:
    """A constraints file holding a lock's versions that apply on the cluster (local labels
    dropped: the cluster takes the release from PyPI)."""
    return "".join(
        f"{name}=={public_version(pin.version)}\n"
        for name, pin in sorted(lock.items())
        if pin.applies(CLUSTER_MARKERS)
    )


def lock_path(name: str) -> Path:
    return REQUIREMENTS / f"{name}.txt"


def cpu_lock_path(name: str) -> Path:
    """The derived lock of a universal test lock, with this machine's CPU torch wheel."""
    return REQUIREMENTS / f"{name}-cpu.txt"


def cpu_lock_text(name: str) -> str:
    """requirements/<name>-cpu.txt, derived from requirements/<name>.txt: torch's entry replaced by
    the local CPU wheel (LOCAL_TORCH, no marker: the Makefile picks this lock only where that wheel
    is), the CUDA-only packages (CUDA_ONLY) dropped, every other entry kept as it is."""
    source = lock_path(name).read_text()
    version, digest = LOCAL_TORCH
    out = [
        f"# Derived from requirements/{name}.txt by `make locks` (python tools/locks.py envs):",
        f"# torch is the local CPU wheel {LOCAL_TORCH_WHEEL}",
        "# (the Makefile installs this lock only where PIP_FIND_LINKS holds it), CUDA-only",
        "# packages dropped. Do not edit.",
    ]
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        match = _REQUIREMENT.match(block[0])
        package = canonical(match[1]) if match else None
        if package == "torch":
            via = [line for line in block[1:] if line.lstrip().startswith("#")]
            out.extend([f"torch=={version} \\", f"    --hash={digest}", *via])
        elif package is None or not CUDA_ONLY.match(package):
            out.extend(block)
        block.clear()

    for line in source.splitlines():
        if line.startswith("#") and not block and not out[4:]:
            continue  # uv's header: replaced by ours
        if line and not line[0].isspace() and not line.startswith("#"):
            flush()
        block.append(line)
    flush()
    return "\n".join(out) + "\n"


def write_cpu_locks() -> list[Path]:
    written = []
    for env in ENVS:
        if env.universal and lock_path(env.name).is_file():
            path = cpu_lock_path(env.name)
            path.write_text(cpu_lock_text(env.name))
            written.append(path)
    return written


def compile_env(env: Env, uv: str = "uv") -> None:
    """Resolve requirements/<env>.in into its hash-locked requirements/<env>.txt with uv, from
    PyPI alone (uv reads no pip or uv configuration: --no-config, and an explicit index)."""
    source = REQUIREMENTS / f"{env.name}.in"
    cmd = [uv, "pip", "compile", source.name, "-o", lock_path(env.name).name, "--generate-hashes"]
    cmd += ["--python-version", PYTHON, "--index-url", PYPI, "--no-config"]
    if env.universal:
        cmd += ["--universal"]
    else:
        cmd += ["--python-platform", CLUSTER_PLATFORM]
    cmd += ["--custom-compile-command", f"make locks  # python tools/locks.py compile {env.name}"]
    # The constraints file lies beside the .in files for the run only, under a fixed name, so that
    # the lock's "via" annotations do not change with a temporary directory's name.
    pinned = REQUIREMENTS / f".versions-of-{env.constrained_by}.txt"
    try:
        if env.constrained_by:
            pinned.write_text(constraints(read_lock(lock_path(env.constrained_by))))
            cmd += ["--constraint", pinned.name]
        subprocess.run(cmd, cwd=REQUIREMENTS, check=True, env=_pypi_only_environ())
    finally:
        pinned.unlink(missing_ok=True)


def _pypi_only_environ() -> dict[str, str]:
    """This process's environment without the variables that add indexes or wheel directories."""
    import os

    drop = ("UV_FIND_LINKS", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_INDEX_URL", "PIP_FIND_LINKS")
    return {key: value for key, value in os.environ.items() if key not in drop}


def conda_env_text(name: str) -> str:
    """workflow/envs/<name>.yaml: Python and pip from conda-forge, every package from the lock,
    hash-checked (pip enters --require-hashes mode as soon as one line carries a hash)."""
    lines = [
        f"# Generated from requirements/{name}.txt by `make locks` (python tools/locks.py envs);",
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
    parser = argparse.ArgumentParser(prog="python tools/locks.py", description=__doc__)
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
    for path in [*write_cpu_locks(), *write_conda_envs()]:
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
