"""config/README.md, generated from the config schema: every key with its type, default and
description, so that the reference can never drift from what `sekd.plan.config` validates.

    python tools/config_docs.py > config/README.md     (make config-docs)

Torch-free, like `sekd.plan.config`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sekd.plan.config import load_schema

HEADER = """\
# Configuration

`config/config.yaml` is the paper (§4 of Song et al., COLING 2025); `config/mini.yaml` overrides it
into the CPU miniature (`--configfile config/mini.yaml`; files given later override earlier ones).
The whole configuration is validated against `workflow/schemas/config.schema.yaml` when the
Snakefile is parsed: an unknown key, a wrong type or an inconsistent value stops the run before any
job, with a message naming the key and the file (or `--config`) that set it. A key left out takes
the default below. Numbers are read as people write them: `2e-5` and `1E3` are numbers (YAML 1.2),
in config files and in `--config` values alike.

Besides each key's type and range, the plan checks what it can know before any job: every value a
figure sweeps or fixes is in its hyper-parameter's range (`kd`'s); a validation set where an SFT
selection or a figure reads it; `data.url` is an http(s) or file:// URL; and, where the source is a
local directory (`data.mirror`, `$SEKD_DATA_MIRROR`, a file:// `data.url`), that it holds every
file the study reads. For models given as local directories (and models built from `init`), it
reads config.json and tokenizer.json: positions (`max_position_embeddings`) for
`training.max_length`, a vocabulary at least the tokenizer's and, for a teacher, the student's, and
the same token ids as the workflow's tokenizer (`tokenizer.from_model`). A model given as a hub id
cannot be read offline: its jobs check it when they load it, before their first step.

This file is generated from the schema (`make config-docs`); `tests/test_config_docs.py` fails when
it is out of date. `<name>` stands for a key you choose (a model's name).
"""


def _resolve(sub: dict, root: dict) -> dict:
    """`sub` with its `$ref` (a local `#/$defs/...` pointer) merged in, its own keys winning."""
    while "$ref" in sub:
        target = root
        for part in sub["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        sub = {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


def _type(sub: dict) -> str:
    if "enum" in sub:
        return "one of " + ", ".join(f"`{v}`" for v in sub["enum"])
    kind = sub.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "array" in kinds and isinstance(sub.get("items"), dict) and "enum" in sub["items"]:
        text += " of " + ", ".join(f"`{v}`" for v in sub["items"]["enum"])
    return text


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _default(sub: dict) -> str:
    if "default" not in sub:
        return "(required)"
    return "`" + json.dumps(sub["default"], ensure_ascii=False) + "`"


def rows(schema: dict, root: dict, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every key below `schema`, depth first."""
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        dotted = f"{prefix}{key}"
        yield dotted, _type(sub), _default(sub), _one_line(sub.get("description"))
        yield from rows(sub, root, f"{dotted}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in _resolve(extra, root):
        yield from rows(_resolve(extra, root), root, f"{prefix}<name>.")


def render() -> str:
    schema = load_schema()
    lines = [HEADER]
    for section, sub in schema["properties"].items():
        sub = _resolve(sub, schema)
        lines += [f"## `{section}`", "", _one_line(sub.get("description")), ""]
        lines += ["| key | type | default | what it does |", "|---|---|---|---|"]
        lines += [f"| `{section}` | {_type(sub)} | {_default(sub)} | |"]
        lines += [f"| `{k}` | {t} | {d} | {w} |" for k, t, d, w in rows(sub, schema, f"{section}.")]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
