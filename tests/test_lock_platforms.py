"""The locks install from PyPI alone, hash-checked, on every platform they are for, checked without
downloading a wheel: for each platform, the lock's environment markers give the packages pip would
install there, and PyPI's index (the JSON Simple API, PEP 691: file names and sha256) must hold, for
each, a file of the locked version that pip can install on that platform (a wheel whose tags it
accepts, or an sdist) and whose sha256 is among the lock's hashes.

The test venvs' locks (dev, comet-dev, tf4; `make venv`, `make test-tf4`) are for Linux x86_64 and
aarch64 and macOS arm64; the deployment locks (the rules' conda envs, the driver, cu12-dev) for the
cluster, Linux x86_64. CPython 3.11 everywhere. Needs PyPI (one index page per project, fetched in
parallel; nothing is cached).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import pytest
from conftest import load_tool
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

locks = load_tool("locks")

SIMPLE = "https://pypi.org/simple/{}/"
PYTHON = (3, 11)
# The oldest glibc assumed on Linux: 2.28 (RHEL 8, Debian 10, Ubuntu 20.04 has 2.31), the cluster's
# (CLUSTER_PLATFORM of tools/locks.py); macOS 14 on Apple silicon.
GLIBC = (2, 28)
MACOS = (14, 0)


def _manylinux(arch: str) -> list[str]:
    tags = [f"manylinux_{GLIBC[0]}_{minor}_{arch}" for minor in range(GLIBC[1], 16, -1)]
    legacy = {"manylinux_2_17": "manylinux2014", "manylinux_2_12": "manylinux2010"}
    tags += [f"{legacy['manylinux_2_17']}_{arch}"]
    if arch == "x86_64":
        tags += [f"manylinux_2_{m}_{arch}" for m in (12, 5)] + [
            f"manylinux2010_{arch}",
            f"manylinux1_{arch}",
        ]
    return [*tags, f"linux_{arch}"]


def _markers(system: str, machine: str) -> dict[str, str]:
    return {
        **locks.CLUSTER_MARKERS,
        "sys_platform": {"Linux": "linux", "Darwin": "darwin"}[system],
        "platform_system": system,
        "platform_machine": machine,
    }


# name: (PEP 508 marker variables, wheel platform tags pip accepts there)
PLATFORMS = {
    "linux-x86_64": (_markers("Linux", "x86_64"), _manylinux("x86_64")),
    "linux-aarch64": (_markers("Linux", "aarch64"), _manylinux("aarch64")),
    "macos-arm64": (_markers("Darwin", "arm64"), list(mac_platforms(MACOS, "arm64"))),
}
UNIVERSAL = [env.name for env in locks.ENVS if env.universal]
CLUSTER = [env.name for env in locks.ENVS if not env.universal]
CASES = [(lock, platform) for lock in UNIVERSAL for platform in PLATFORMS] + [
    (lock, "linux-x86_64") for lock in CLUSTER
]


@cache
def supported_tags(platform: str) -> frozenset[Tag]:
    platforms = PLATFORMS[platform][1]
    return frozenset(
        [
            *cpython_tags(PYTHON, abis=["cp311", "abi3", "none"], platforms=platforms),
            *compatible_tags(PYTHON, "cp311", platforms),
        ]
    )


def _fetch(name: str, tries: int = 4) -> list[dict]:
    request = urllib.request.Request(
        SIMPLE.format(name), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["files"]
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, TimeoutError):
            if attempt == tries - 1:
                raise
            time.sleep(2**attempt)  # a transient network or DNS failure
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def pypi() -> dict[str, dict[Version, list[File]]]:
    """{project: {version: its files on PyPI}} for every project in any lock, fetched in
    parallel."""
    names = sorted({name for lock in CLUSTER + UNIVERSAL for name in _pins(lock)})
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(names, map(by_version, pool.map(_fetch, names)), strict=True))
    except (urllib.error.URLError, TimeoutError) as error:
        pytest.fail(f"PyPI's index ({SIMPLE.format('<name>')}) is unreachable: {error}")


@cache
def _pins(lock: str) -> dict[str, locks.Pin]:
    return locks.read_lock(locks.lock_path(lock))


@dataclass(frozen=True)
class File:
    """A distribution file on PyPI: its name, wheel tags (None: an sdist) and sha256."""

    filename: str
    tags: frozenset[Tag] | None
    sha256: str


def by_version(files: list[dict]) -> dict[Version, list[File]]:
    """PEP 691 file entries grouped by version (yanked files and other kinds left out)."""
    grouped: dict[Version, list[File]] = {}
    for entry in files:
        name = entry["filename"]
        if entry.get("yanked"):
            continue
        try:
            if name.endswith(".whl"):
                _, version, _, tags = parse_wheel_filename(name)
            elif name.endswith((".tar.gz", ".zip")):
                version, tags = parse_sdist_filename(name)[1], None
            else:
                continue
        except ValueError:
            continue
        digest = "sha256:" + entry["hashes"].get("sha256", "")
        grouped.setdefault(version, []).append(File(name, tags, digest))
    return grouped


def installable(
    files: dict[Version, list[File]], version: str, hashes: set[str], platform: str
) -> list[str]:
    """The files of `version` pip may install on `platform` whose sha256 the lock holds."""
    here = supported_tags(platform)
    return [
        file.filename
        for file in files.get(Version(version), [])
        if (file.tags is None or file.tags & here) and file.sha256 in hashes
    ]


@pytest.mark.parametrize(("lock", "platform"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_every_package_of_the_lock_has_a_hashed_file_for_the_platform(lock, platform, pypi):
    environment = PLATFORMS[platform][0]
    missing = []
    for name, pin in _pins(lock).items():
        if not pin.applies(environment):
            continue
        if not installable(pypi[name], pin.version, set(pin.hashes), platform):
            offered = sorted(f.filename for f in pypi[name].get(Version(pin.version), []))
            missing.append(f"  {name}=={pin.version}: PyPI offers {offered or 'no file'}")
    assert not missing, (
        f"requirements/{lock}.txt cannot be installed with --require-hashes on {platform} "
        "(CPython 3.11) from PyPI: no file of these pins fits the platform with a hash the lock "
        "holds (re-lock with `make locks`, or change the pin):\n" + "\n".join(missing)
    )


def test_the_checker_rejects_a_wheel_of_another_platform_or_hash():
    wheels = [
        {"filename": "x-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "hashes": {"sha256": "a"}},
        {"filename": "x-1.0-cp311-cp311-macosx_11_0_arm64.whl", "hashes": {"sha256": "b"}},
        {"filename": "x-1.0-cp311-cp311-manylinux_2_34_aarch64.whl", "hashes": {"sha256": "a"}},
    ]
    files = by_version(wheels)
    assert installable(files, "1.0", {"sha256:a"}, "linux-x86_64") == [wheels[0]["filename"]]
    assert not installable(files, "1.0", {"sha256:a"}, "linux-aarch64")
    assert not installable(files, "1.0", {"sha256:a"}, "macos-arm64")
    assert installable(files, "1.0", {"sha256:b"}, "macos-arm64")
    assert not installable(files, "1.1", {"sha256:a", "sha256:b"}, "linux-x86_64")
    sdist = by_version([{"filename": "x-1.0.tar.gz", "hashes": {"sha256": "c"}}])
    assert installable(sdist, "1.0", {"sha256:c"}, "linux-aarch64")
