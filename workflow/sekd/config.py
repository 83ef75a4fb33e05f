"""Configuration: load, merge, validate against the JSON schema, fill defaults, check consistency.

Every error names the offending key as a dotted path (``training.learning_rate``) so a user can
find it in their YAML. Torch-free: the Snakefile calls `validate_config` at parse time.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sekd import data
from sekd.errors import ConfigError
from sekd.objectives import OBJECTIVES
from sekd.study import consistency_errors as study_errors
from sekd.study import load_paper

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
MIRROR_ENV = "SEKD_DATA_MIRROR"


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def deep_merge(base: dict, override: dict) -> dict:
    """Recursive dict update, as Snakemake merges several --configfile files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path) -> dict:
    """Merge YAML files left to right (later files override) and validate the result."""
    merged: dict = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        merged = deep_merge(merged, loaded)
    return validate_config(merged)


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_errors(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = list(error.path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            for key in extra:
                hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
                messages.append(f"config key '{_dotted([*where, key])}': unknown key{hint}")
        elif error.validator == "required":
            messages.append(f"config key '{_dotted(where)}': {error.message}")
        elif "propertyNames" in error.schema_path:
            messages.append(
                f"config key '{_dotted([*where, error.instance])}': invalid name "
                f"(must match {error.validator_value})"
            )
        else:
            messages.append(f"config key '{_dotted(where)}': {error.message}")
    return messages


def _fill_defaults(instance: dict, schema: dict, root: dict) -> None:
    """Insert the schema's `default` for every missing key, recursively."""
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        extra = _resolve(extra, root)
        for key, value in instance.items():
            if key not in schema.get("properties", {}) and isinstance(value, dict):
                _fill_defaults(value, extra, root)


def _resolve(sub: dict, root: dict) -> dict:
    ref = sub.get("$ref")
    if not ref:
        return sub
    target = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in sub.items() if k != "$ref"}}


def validate_config(config: dict, *, environ: dict | None = None) -> dict:
    """Return a validated copy of `config` with defaults filled in; raise ConfigError otherwise.

    `SEKD_DATA_MIRROR` in the environment, when set, replaces `data.mirror`. The tables and
    figures of config/paper.yaml are the defaults of `tables` and `figures`.
    """
    environ = os.environ if environ is None else environ
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of keys")
    config = deep_merge(load_paper(), config)
    schema = load_schema()
    messages = _schema_errors(config, schema)
    if messages:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(messages))
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, schema)
    if environ.get(MIRROR_ENV):
        config["data"]["mirror"] = environ[MIRROR_ENV]
    messages = _consistency_errors(config)
    if messages:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(messages))
    return config


def _consistency_errors(config: dict) -> list[str]:
    """Checks a schema cannot express: cross-references between keys."""
    errors = []
    models = config["models"]
    for name, model in models.items():
        if (model["pretrained"] is None) == (model["init"] is None):
            errors.append(f"config key 'models.{name}': set exactly one of 'pretrained' or 'init'")
        init = model["init"] or {}
        if init and init["hidden_size"] % init["num_attention_heads"]:
            errors.append(
                f"config key 'models.{name}.init.num_attention_heads': must divide hidden_size"
            )
    tok = config["tokenizer"]
    if (tok["from_model"] is None) == (tok["train"] is None):
        errors.append("config key 'tokenizer': set exactly one of 'from_model' or 'train'")
    elif tok["from_model"] is not None:
        if tok["from_model"] not in models:
            errors.append(f"config key 'tokenizer.from_model': no model {tok['from_model']!r}")
        elif models[tok["from_model"]]["pretrained"] is None:
            errors.append(
                "config key 'tokenizer.from_model': that model has no 'pretrained' tokenizer; "
                "use 'tokenizer.train' for models built from 'init'"
            )
    errors += study_errors(config)
    for objective in config["teacher_store"]["fidelity"]["objectives"]:
        if OBJECTIVES[objective].needs_full_teacher:
            errors.append(
                f"config key 'teacher_store.fidelity.objectives': {objective!r} needs the "
                "teacher's full distribution; a sparse store cannot serve it"
            )
    training = config["training"]
    if training["batch_size"] % training["per_device_batch_size"]:
        errors.append(
            "config key 'training.per_device_batch_size': must divide training.batch_size"
        )
    d = config["data"]
    languages = config["languages"]
    needed = []
    path_of = {
        "pairs": data.train_files,
        "valid_directions": data.valid_file,
        "test_directions": data.test_file,
    }
    for key, paths in path_of.items():
        for item in d[key]:
            src, tgt = item.split("-")
            if src == tgt or "en" not in (src, tgt):
                errors.append(
                    f"config key 'data.{key}': {item!r} must pair English with another language "
                    "(ALMA layout)"
                )
                continue
            for code in (src, tgt):
                if code not in languages:
                    errors.append(
                        f"config key 'languages': no name for {code!r} (used in data.{key})"
                    )
            result = paths(item)
            needed += list(result) if isinstance(result, tuple) else [result]
    for relpath in needed:
        if relpath not in d["sha256"]:
            errors.append(f"config key 'data.sha256': no checksum for {relpath!r}")
    if d["mirror"] is not None and not Path(d["mirror"]).is_dir():
        errors.append(
            f"config key 'data.mirror' (or ${MIRROR_ENV}): {d['mirror']!r} is not a directory"
        )
    return list(dict.fromkeys(errors))
