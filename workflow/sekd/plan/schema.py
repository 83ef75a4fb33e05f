"""The config schema's file, and the defaults and choices it declares (torch-free, standard
library and PyYAML only): the one place a key's default is written. Code that needs a default
(a job that received a key only when it was not the default, a module constant) reads it here.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from sekd.plan.yaml_loader import read_yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


@functools.cache
def _file() -> dict:
    return read_yaml(SCHEMA_PATH)


def raw() -> dict:
    """The schema file as written (a copy: callers may fill in what the registries declare)."""
    return copy.deepcopy(_file())


def entry(key: str) -> dict:
    """The schema entry of dotted config key `key` (``training.truncation``), as written."""
    node = _file()
    for part in key.split("."):
        node = node["properties"][part]
    return node


def default(key: str) -> Any:
    """The default of dotted config key `key`, as the schema file declares it."""
    return copy.deepcopy(entry(key)["default"])


def choices(key: str) -> tuple:
    """The allowed values (`enum`) of dotted config key `key`."""
    return tuple(entry(key)["enum"])
