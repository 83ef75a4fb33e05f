"""The one YAML reader of the workflow's config files (config/*.yaml, `--configfile`, `--config`
values, the schema and paper declarations): PyYAML's safe loader with two changes.

- Numbers as people write them: `2e-5`, `1E3`, `1.0e5`, `.5e-3` are floats (YAML 1.2, and every
  Hugging Face recipe), where YAML 1.1 reads an exponent without a dot and a signed exponent as a
  string. Nothing else becomes a number: `1e`, `e5`, `1.2.3`, `7e10abc` stay strings.
- A key written twice in one mapping is refused, naming the file and both lines (plain YAML keeps
  the last value without a word).

Torch-free (standard library and PyYAML only).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml

from sekd.errors import ConfigError

# YAML 1.2's float with an exponent (PyYAML's YAML 1.1 resolver already reads the dotted forms
# without one, and `.5e-3`/`1.0e-5` whose exponent has a sign)
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader reading YAML 1.2 exponent floats as floats and refusing a key written
    twice in one mapping. Its own resolver table: yaml.SafeLoader itself is left unchanged."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}:{line}: duplicate key {key!r} "
                    f"(first on line {seen[key]}); YAML would keep only the last value"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml(text: str, name: str) -> Any:
    """`text` read as YAML by `ConfigLoader`; `name` (a file's path, `--config`) is where its
    error messages say the text came from. yaml.YAMLError for invalid YAML, ConfigError for a
    duplicate key."""
    stream = io.StringIO(text)
    stream.name = name  # the marks of error messages carry it
    return yaml.load(stream, Loader=ConfigLoader)  # a SafeLoader


def read_yaml(path: str | Path) -> Any:
    """The YAML file `path` read by `ConfigLoader` (see `parse_yaml`)."""
    return parse_yaml(Path(path).read_text(encoding="utf-8"), str(path))
