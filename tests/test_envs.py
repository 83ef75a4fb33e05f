"""The environments: every install hash-checked against one lock per env (tools/locks.py), the
rules' conda env files written from those locks, the test venvs at the versions of the envs they
stand for, and the driver without torch or COMET."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import load_tool

locks = load_tool("locks")

ROOT = Path(__file__).resolve().parents[1]
LOCKED = [env.name for env in locks.ENVS if locks.lock_path(env.name).is_file()]
CONDA = [env.name for env in locks.ENVS if env.conda and locks.lock_path(env.name).is_file()]
UNIVERSAL = [env.name for env in locks.ENVS if env.universal]
# every lock file: the PyPI locks and the CPU locks derived from the universal ones
LOCK_FILES = [locks.lock_path(name) for name in LOCKED] + [
    locks.cpu_lock_path(name) for name in UNIVERSAL
]


def test_every_env_has_its_lock():
    for env in locks.ENVS:
        assert (locks.REQUIREMENTS / f"{env.name}.in").is_file(), env.name
        assert locks.lock_path(env.name).is_file(), f"{env.name}: run `make locks`"
        if env.universal:
            assert locks.cpu_lock_path(env.name).is_file(), f"{env.name}-cpu: run `make locks`"
    derived = {f"{name}-cpu" for name in UNIVERSAL}
    stray = {p.stem for p in locks.REQUIREMENTS.glob("*.txt")} - set(locks.BY_NAME) - derived
    assert not stray, f"requirements/ holds locks of no env: {sorted(stray)}"


@pytest.mark.parametrize("path", LOCK_FILES, ids=[p.stem for p in LOCK_FILES])
def test_every_locked_package_is_pinned_and_hashed(path):
    pins = locks.read_lock(path)
    assert pins
    for package, pin in pins.items():
        assert pin.hashes, f"requirements/{path.name}: {package} has no --hash"


@pytest.mark.parametrize("name", UNIVERSAL)
def test_the_cpu_lock_is_derived_from_the_pypi_lock(name):
    """<name>-cpu.txt is <name>.txt with the local CPU torch and no CUDA-only package, exactly."""
    path = locks.cpu_lock_path(name)
    assert path.read_text() == locks.cpu_lock_text(name), f"{path}: run `make locks`"
    pypi, cpu = locks.read_lock(locks.lock_path(name)), locks.read_lock(path)
    assert cpu.pop("torch") == locks.Pin(locks.LOCAL_TORCH[0], (locks.LOCAL_TORCH[1],))
    assert locks.public_version(locks.LOCAL_TORCH[0]) == pypi["torch"].version
    assert cpu == {
        package: pin
        for package, pin in pypi.items()
        if package != "torch" and not locks.CUDA_ONLY.match(package)
    }


def test_the_local_torch_wheel_is_the_one_the_makefile_looks_for_and_its_hash():
    make = (ROOT / "Makefile").read_text()
    assert f"LOCAL_TORCH_WHEEL := {locks.LOCAL_TORCH_WHEEL}\n" in make
    assert "CPU ?= $(if $(strip $(foreach dir,$(PIP_LINKS)" in make
    assert (
        "PIP_LINKS := $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links"
        in make
    )
    for directory in os.environ.get("PIP_FIND_LINKS", "").split():
        wheel = Path(directory) / locks.LOCAL_TORCH_WHEEL
        if wheel.is_file():
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            assert f"sha256:{digest}" == locks.LOCAL_TORCH[1], (
                f"{wheel}: another build than LOCAL_TORCH"
            )


@pytest.mark.parametrize("name", LOCKED)
def test_the_lock_holds_the_direct_pins_of_its_in_file(name):
    wanted = locks.read_in(locks.REQUIREMENTS / f"{name}.in")
    pins = locks.read_lock(locks.lock_path(name))
    for package, version in wanted.items():
        assert package in pins, f"requirements/{name}.txt lacks {package} (`make locks`)"
        assert locks.public_version(pins[package].version) == locks.public_version(version), (
            f"requirements/{name}.txt: {package}=={pins[package].version}, {name}.in says {version}"
        )


@pytest.mark.parametrize("name", CONDA)
def test_conda_env_files_are_written_from_the_locks(name):
    path = locks.CONDA_ENVS / f"{name}.yaml"
    assert path.read_text() == locks.conda_env_text(name), f"{path}: run `make locks`"
    env = yaml.safe_load(path.read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert len(pip) == len(locks.read_lock(locks.lock_path(name)))
    assert all("--hash=sha256:" in line for line in pip)


@pytest.mark.parametrize(("test_venv", "deployed"), list(locks.TESTED_BY.items()))
def test_test_venvs_run_the_versions_of_the_envs_they_stand_for(test_venv, deployed):
    tested = locks.read_lock(locks.lock_path(test_venv))
    for name in deployed:
        for package, pin in locks.read_lock(locks.lock_path(name)).items():
            assert package in tested, f"{name} has {package}, {test_venv} does not"
            assert tested[package].applies(locks.CLUSTER_MARKERS), (test_venv, package)
            assert locks.public_version(tested[package].version) == pin.version, (
                f"{package}: {name} {pin.version}, {test_venv} {tested[package].version}"
            )


def test_the_train_env_is_on_transformers_5_and_comet_on_4():
    train = locks.read_lock(locks.lock_path("train"))
    comet = locks.read_lock(locks.lock_path("comet"))
    assert train["transformers"].version.startswith("5.")
    assert comet["transformers"].version.startswith("4.")
    assert int(comet["numpy"].version.split(".")[0]) < 2


def test_the_driver_is_light():
    driver = locks.read_lock(locks.lock_path("driver"))
    heavy = {"torch", "transformers", "unbabel-comet", "deepspeed", "vllm", "tokenizers"}
    assert not heavy & set(driver)
    assert driver["snakemake-executor-plugin-slurm"].version.startswith("2.8.")


def test_every_lock_takes_torch_from_pypi_and_only_the_derived_locks_from_the_cpu_wheel():
    for name in LOCKED:
        torch = locks.read_lock(locks.lock_path(name)).get("torch")
        assert torch is None or "+" not in torch.version, (name, torch)
    assert locks.read_lock(locks.lock_path("train"))["torch"].version == "2.13.0"
    assert locks.read_lock(locks.lock_path("dev"))["torch"].version == "2.13.0"
    assert locks.read_lock(locks.cpu_lock_path("dev"))["torch"].version == "2.13.0+cpu"


def test_each_cuda_variant_holds_one_cuda_generation():
    """train and vllm are on CUDA 13 (torch 2.13.0), train-cu12 and vllm-cu12 on CUDA 12 (torch
    2.10.0): CUDA Python (cuda-bindings, cuda-python) and the NVIDIA libraries of the torch build's
    generation. nvidia-cutlass-dsl-libs-base (vLLM's CuTe DSL) asks for its cu12 and cu13 builds
    both, whatever the torch."""
    for name, major in {"train": 13, "vllm": 13, "train-cu12": 12, "vllm-cu12": 12}.items():
        pins = locks.read_lock(locks.lock_path(name))
        assert pins["torch"].version == {13: "2.13.0", 12: "2.10.0"}[major], name
        for package in ("cuda-bindings", "cuda-python", "cuda-toolkit"):
            if package in pins:
                assert int(pins[package].version.split(".")[0]) == major, (name, package, pins)
        other = {13: "-cu12", 12: "-cu13"}[major]
        strays = [p for p in pins if p.endswith(other) and not p.startswith("nvidia-cutlass-dsl")]
        assert not strays, f"{name} (CUDA {major}) holds {strays}"


def _running_lock() -> Path:
    """The lock this venv was built from: the derived CPU lock when its torch is the local build."""
    local = "+" in metadata.version("torch")
    return locks.cpu_lock_path("dev") if local else locks.lock_path("dev")


def test_installed_versions_are_the_locked_ones():
    """This venv is the dev lock, exactly (a package installed outside it would show here): the
    packages the lock's markers give this platform."""
    pins = {name: pin for name, pin in locks.read_lock(_running_lock()).items() if pin.applies()}
    installed = {
        locks.canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    installed.pop("sekd", None)
    for name in ("pip", "setuptools", "wheel"):
        if name not in pins:
            installed.pop(name, None)
    assert {name: pin.version for name, pin in pins.items()} == installed


def test_read_lock_joins_continuations_and_refuses_unpinned_lines(tmp_path):
    lock = tmp_path / "x.txt"
    lock.write_text(
        "# header\nfoo-bar==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
        "Baz_Q[extra]==2.0+cpu --hash=sha256:" + "b" * 64 + "\n"
    )
    pins = locks.read_lock(lock)
    assert pins == {
        "foo-bar": locks.Pin("1.0", ("sha256:" + "a" * 64,)),
        "baz-q": locks.Pin("2.0+cpu", ("sha256:" + "b" * 64,)),
    }
    lock.write_text("foo>=1\n")
    with pytest.raises(ValueError, match="not a pinned requirement"):
        locks.read_lock(lock)


def test_make_venv_installs_every_lock_with_require_hashes():
    text = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install[^\n]*", text)
    from_files = [line for line in installs if " -r " in line]
    assert from_files and all("--require-hashes" in line for line in from_files)
    assert not [line for line in installs if " -r " not in line and "-e ." not in line]


def test_every_rule_names_an_existing_env():
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    envs = set(re.findall(r'"\.\./envs/([\w-]+\.yaml)"', rules))
    assert envs and all((ROOT / "workflow" / "envs" / e).is_file() for e in envs)


def test_a_changed_lock_makes_the_conda_env_file_stale(tmp_path, monkeypatch):
    """The env-file check above can fail: a lock edited without `make locks` is caught."""
    edited = (
        (ROOT / "requirements" / "score.txt")
        .read_text()
        .replace("sacrebleu==2.5.1", "sacrebleu==2.5.0")
    )
    (tmp_path / "score.txt").write_text(edited)
    monkeypatch.setattr(locks, "REQUIREMENTS", tmp_path)
    assert locks.conda_env_text("score") != (ROOT / "workflow" / "envs" / "score.yaml").read_text()


def test_the_driver_venv_plans_the_paper_without_torch(tmp_path, planning_env):
    """The driver venv (`make venv` builds .venv-driver from requirements/driver.txt) has no torch
    and plans the paper's study under profiles/slurm, with the SLURM plugin 2.8 loaded (and the
    planning stand-in for conda, tests/conftest.py: the profile runs jobs in their conda envs)."""
    driver = ROOT / ".venv-driver" / "bin"
    assert (driver / "snakemake").is_file(), "no .venv-driver: `make venv` builds it"
    env = {k: v for k, v in planning_env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{driver}:{env['PATH']}"
    probe = subprocess.run(
        [driver / "python", "-c", "import torch"], capture_output=True, text=True, env=env
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    version = (
        "from importlib.metadata import version; print(version('snakemake-executor-plugin-slurm'))"
    )
    plugin = subprocess.run(
        [driver / "python", "-c", version], capture_output=True, text=True, env=env
    )
    assert plugin.stdout.startswith("2.8."), plugin.stdout + plugin.stderr
    cmd = [
        driver / "snakemake", "-n", "-s", ROOT / "workflow" / "Snakefile", "-d", tmp_path,
        "--profile", ROOT / "profiles" / "slurm", "all",
    ]  # fmt: skip
    plan = subprocess.run(cmd, capture_output=True, text=True, env=env)
    output = plan.stdout + plan.stderr
    assert plan.returncode == 0, output[-3000:]
    assert re.search(r"^rule kd:", output, re.M) and "table1" in output


def test_every_comet_test_runs_in_the_comet_venv():
    """`make test` runs `-m "not comet"` here and the comet-marked files in .venv-comet: a comet
    test in another file would run nowhere."""
    marked = {
        f"tests/{path.name}"
        for path in (ROOT / "tests").glob("test_*.py")
        if "pytest.mark.comet" in path.read_text()
    }
    make = (ROOT / "Makefile").read_text()
    run = re.search(r"\(COMET_VENV\)/bin/pytest -m comet ([^\n]+)", make)
    marked.discard("tests/test_envs.py")  # this test names the marker
    assert run and set(run[1].split()) == marked == {"tests/test_comet.py"}
    assert '$(VENV)/bin/pytest -m "not comet"' in make


def test_comet_outside_its_env_names_the_env_to_use():
    """The test venv has no COMET (its own env): the rule's error says where COMET runs."""
    from sekd.evaluate import comet

    with pytest.raises(ModuleNotFoundError, match=r"envs/comet\.yaml.*--sdm conda"):
        comet._import_comet()
