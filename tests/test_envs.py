"""The conda envs of the rules pin the same versions as the lock file the tests install."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def _lock(name: str = "lock.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def _env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                match = PIN.match(line)
                assert match, f"{path.name}: pip dependency {line!r} is not pinned with =="
                pins[match[1].lower()] = match[2]
    return pins


ENVS = sorted((ROOT / "workflow" / "envs").glob("*.yaml"))


@pytest.mark.parametrize("env", ENVS, ids=[e.stem for e in ENVS])
def test_env_pins_match_the_lock_file(env):
    # the vLLM env has a lock of its own (its numpy and vLLM's dependencies; docs/environments.md)
    lock = _lock("vllm.txt" if env.stem == "vllm" else "lock.txt")
    pins = _env_pins(env)
    assert pins, f"{env.name} pins nothing"
    for name, version in pins.items():
        assert lock.get(name) == version, (
            f"{env.name}: {name}=={version}, lock has {lock.get(name)}"
        )


def test_installed_versions_are_the_locked_ones():
    for name, version in _lock().items():
        installed = metadata.version(name)
        assert installed.split("+")[0] == version, (
            f"{name}: installed {installed}, locked {version}"
        )


def test_every_rule_names_an_existing_env():
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    envs = set(re.findall(r'"\.\./envs/([\w-]+\.yaml)"', rules))
    assert envs and all((ROOT / "workflow" / "envs" / e).is_file() for e in envs)
