"""Configuration: load, merge, validate against the JSON schema, fill defaults, check consistency.

Every error names the offending key as a dotted path (``training.learning_rate``) so a user can
find it in their YAML. Torch-free: the Snakefile calls `validate_config` at parse time.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sekd.data import alma as data
from sekd.errors import ConfigError
from sekd.plan.objectives import HPARAMS, OBJECTIVES, RUN_OPTIONS, kd_objectives, param_symbols
from sekd.plan.schema import raw
from sekd.plan.study import consistency_errors as study_errors
from sekd.plan.study import load_paper

MIRROR_ENV = "SEKD_DATA_MIRROR"


def _is_integer(checker, instance) -> bool:
    """JSON Schema's "integer" accepts 1.0; here an integer key takes Python ints only, so
    `seeds: [1.0]` or `batch_size: 16.0` stop at validation, not as a path or a TypeError in a
    job."""
    return isinstance(instance, int) and not isinstance(instance, bool)


StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def load_schema() -> dict:
    """The config schema, with what the registries declare filled in at the time of the call:
    the enum of `$defs.objective` (every key that takes an objective refers to it) from the KD
    objectives, and from the hyper-parameters (`sekd.plan.objectives.HPARAMS`) the `kd` section's
    keys (type, range, default, description: `HParam.schema`, before the run options) and a
    figure's keys of swept values (one per hyper-parameter with a symbol). The YAML file names
    neither; nor the values and default of the run options' keys (`sekd.plan.objectives.
    RUN_OPTIONS`). Every other default is the file's (`sekd.plan.schema.default`)."""
    schema = raw()
    schema["$defs"]["objective"]["enum"] = kd_objectives()
    kd = schema["properties"]["kd"]
    kd["properties"] = {
        **{name: h.schema() for name, h in HPARAMS.items()},
        **kd["properties"],
    }
    figure = schema["$defs"]["figure"]["properties"]
    swept = {name: {"$ref": "#/$defs/sweep_values", "default": None} for name in param_symbols()}
    schedules = figure.pop("beta_schedules")
    figure.update({**swept, "beta_schedules": schedules})
    _run_option_entries(schema)
    return schema


def _run_option_entries(schema: dict) -> None:
    """The values and default of each run option's config key from its declaration
    (`sekd.plan.objectives.RUN_OPTIONS`: values[0] is the default); student_init's two keys take
    the default only (each allows its own subset of the values)."""
    for option in RUN_OPTIONS.values():
        node = schema
        for part in option.key.split("."):
            node = node["properties"][part]
        if "properties" in node:
            for child in node["properties"].values():
                child["default"] = option.default
        else:
            node.update(enum=list(option.values), default=option.default)


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
        check_config_file(path)
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
    validator = StrictValidator(schema)
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


def _defaults_filler(validator_class: type) -> type:
    """`validator_class` whose `properties` keyword also inserts each missing property's
    `default` (the jsonschema FAQ's recipe, as `snakemake.utils.validate(set_default=True)`),
    skipping instances that are not objects: Snakemake's own version calls `setdefault` on them
    and fails on a nullable section such as `tokenizer.train: null` (Snakemake 9.27)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def fill_defaults(config: dict, schema: dict) -> dict:
    """A copy of a schema-valid `config` with every missing key set to the schema's `default`,
    recursively (through `$ref` and `additionalProperties`)."""
    config = copy.deepcopy(config)
    _defaults_filler(StrictValidator)(schema).validate(config)
    return config


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
    config = fill_defaults(config, schema)
    if environ.get(MIRROR_ENV):
        if not Path(environ[MIRROR_ENV]).is_absolute():
            # Snakemake has already moved to --directory: a relative path would silently be read
            # from there, not from where the user typed it
            raise ConfigError(
                f"${MIRROR_ENV}={environ[MIRROR_ENV]!r}: give an absolute path "
                f"(a relative one would be read from the working directory {os.getcwd()})"
            )
        config["data"]["mirror"] = environ[MIRROR_ENV]
    messages = _consistency_errors(config)
    if messages:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(messages))
    return config


HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


def _pretrained_errors(key: str, value: str) -> list[str]:
    """A `pretrained` value is a local directory (it must exist) or a hub id `org/name`.

    What looks like a path (absolute, ./ ../ ~, or more than one '/') must be a directory now:
    otherwise the job would fail hours later with the hub's "Repo id must be in the form" error.
    """
    if Path(value).expanduser().is_dir():
        return []
    looks_local = value.startswith(("/", "./", "../", "~")) or value.count("/") > 1
    if looks_local:
        return [f"config key '{key}': {value!r} is not a directory (a local model path)"]
    if not HUB_ID.match(value):
        return [f"config key '{key}': {value!r} is neither a directory nor a hub id (org/name)"]
    return []


# Names that are branches on (nearly) every hub repository: they move, so they pin nothing.
BRANCHES = frozenset({"main", "master", "head", "dev", "develop", "trunk"})


def _revision_errors(key: str, revision: str | None, source: str | None) -> list[str]:
    """A revision pins a hub id's source to a commit hash or tag: not a branch, and not a model
    built from `init` or a local directory (which have no revisions)."""
    if revision is None:
        return []
    if revision.lower() in BRANCHES or revision.startswith("refs/heads/"):
        return [
            f"config key '{key}': {revision!r} is a branch, which moves; pin a commit hash "
            "(40 hex digits) or a tag"
        ]
    if source is None or Path(source).expanduser().exists():
        what = "a model built from 'init'" if source is None else f"the local path {source!r}"
        return [f"config key '{key}': {what} has no revisions; remove it"]
    return []


def is_hub_id(source: str | None) -> bool:
    """Whether a `pretrained` / `comet_model` value names a hub repository (not a local path)."""
    return source is not None and not Path(source).expanduser().exists()


def unpinned_warnings(config: dict) -> list[str]:
    """One warning per hub model (models.*.pretrained, scoring.comet_model) without a revision:
    it loads whatever the hub serves on the day the job runs."""
    sources = [
        (f"models.{name}", model["pretrained"], model["revision"], f"models.{name}.revision")
        for name, model in config["models"].items()
    ]
    scoring = config["scoring"]
    comet = (scoring["comet_model"], scoring["comet_revision"], "scoring.comet_revision")
    sources.append(("scoring.comet_model", *comet))
    return [
        f"{key}: hub model {source!r} loads without a revision (unpinned: the hub's current "
        f"files); set {pin} to a commit hash or tag (README, section Models)"
        for key, source, revision, pin in sources
        if is_hub_id(source) and revision is None
    ]


def _local_tokenizer_size(directory: Path) -> int | None:
    """Entries of a local directory's tokenizer.json (vocabulary and added tokens), read without
    transformers; None without one (or of a kind not read here)."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    vocab = (spec.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):  # BPE, WordPiece: token -> id
        ids = set(vocab.values())
    elif isinstance(vocab, list):  # Unigram: [piece, score] by id
        ids = set(range(len(vocab)))
    else:
        return None
    return len(ids | {token["id"] for token in spec.get("added_tokens") or []})


def _local_vocab_size(directory: Path) -> int | None:
    """vocab_size of a local model directory's config.json, None without one."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    size = json.loads(path.read_text(encoding="utf-8")).get("vocab_size")
    return size if isinstance(size, int) else None


def _local_vocab_errors(config: dict) -> list[str]:
    """At plan time where both are on disk: a local `pretrained` model whose config.json
    vocab_size is smaller than the tokenizer that `tokenizer.from_model` names (its job would
    stop at start; built `init` models take the tokenizer's size, hub models are checked then)."""
    models = config["models"]
    source = models.get(config["tokenizer"]["from_model"] or "", {}).get("pretrained")
    if source is None or not Path(source).expanduser().is_dir():
        return []
    entries = _local_tokenizer_size(Path(source).expanduser())
    if entries is None:
        return []
    errors = []
    for name, model in models.items():
        path = Path(model["pretrained"] or "").expanduser()
        size = _local_vocab_size(path) if model["pretrained"] and path.is_dir() else None
        if size is not None and size < entries:
            errors.append(
                f"config key 'models.{name}.pretrained': {model['pretrained']} has vocab_size "
                f"{size} (config.json), fewer than the {entries} entries of the workflow's "
                f"tokenizer (tokenizer.from_model: {source}/tokenizer.json)"
            )
    return errors


def _consistency_errors(config: dict) -> list[str]:
    """Checks a schema cannot express: cross-references between keys, section by section."""
    errors = _model_errors(config) + _tokenizer_errors(config) + study_errors(config)
    for objective in config["teacher_store"]["fidelity"]["objectives"]:
        if OBJECTIVES[objective].needs_full_teacher:
            errors.append(
                f"config key 'teacher_store.fidelity.objectives': {objective!r} needs the "
                "teacher's full distribution; a sparse store cannot serve it"
            )
    scoring = config["scoring"]
    if scoring["comet_revision"] is not None and scoring["comet_model"] is None:
        errors.append("config key 'scoring.comet_revision': set, but scoring.comet_model is null")
    else:
        errors += _revision_errors(
            "scoring.comet_revision", scoring["comet_revision"], scoring["comet_model"]
        )
    training = config["training"]
    if not training["select_best_sft"] and training["sft_selection"] == "valid_bleu":
        errors.append(
            "config key 'training.sft_selection': valid_bleu, but training.select_best_sft is "
            "false (keep the last checkpoint); sft_selection: last replaces select_best_sft: false"
        )
    if training["batch_size"] % training["per_device_batch_size"]:
        errors.append(
            "config key 'training.per_device_batch_size': must divide training.batch_size"
        )
    errors += _data_errors(config["data"], config["languages"])
    return list(dict.fromkeys(errors))


def _model_errors(config: dict) -> list[str]:
    """`models.<name>`: one of pretrained/init, head counts that divide, paths, revisions."""
    errors = []
    for name, model in config["models"].items():
        if (model["pretrained"] is None) == (model["init"] is None):
            errors.append(f"config key 'models.{name}': set exactly one of 'pretrained' or 'init'")
        init = model["init"] or {}
        if init and init["hidden_size"] % init["num_attention_heads"]:
            errors.append(
                f"config key 'models.{name}.init.num_attention_heads': must divide hidden_size"
            )
        kv_heads = init.get("num_key_value_heads")
        if kv_heads and init["num_attention_heads"] % kv_heads:
            errors.append(
                f"config key 'models.{name}.init.num_key_value_heads': must divide "
                "num_attention_heads (each KV head serves a whole group of query heads)"
            )
        if model["pretrained"] is not None:
            errors += _pretrained_errors(f"models.{name}.pretrained", model["pretrained"])
        errors += _revision_errors(
            f"models.{name}.revision", model["revision"], model["pretrained"]
        )
    return errors


def _tokenizer_errors(config: dict) -> list[str]:
    """`tokenizer`: exactly one source; from_model names a pretrained model of `models`."""
    tok, models = config["tokenizer"], config["models"]
    if (tok["from_model"] is None) == (tok["train"] is None):
        return ["config key 'tokenizer': set exactly one of 'from_model' or 'train'"]
    if tok["from_model"] is None:
        return []
    if tok["from_model"] not in models:
        return [f"config key 'tokenizer.from_model': no model {tok['from_model']!r}"]
    if models[tok["from_model"]]["pretrained"] is None:
        return [
            "config key 'tokenizer.from_model': that model has no 'pretrained' tokenizer; "
            "use 'tokenizer.train' for models built from 'init'"
        ]
    return _local_vocab_errors(config)


def _data_errors(d: dict, languages: dict) -> list[str]:
    """`data`: English pairs in the ALMA layout, a language name and a checksum for every file
    the study reads, and a mirror that exists."""
    errors, needed = [], []
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
    return errors


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (plain YAML keeps the last
    value without a word), naming both lines."""

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


def check_config_file(path: str | Path) -> None:
    """Raise ConfigError, naming the file and line, for invalid YAML or a duplicate key."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        yaml.load(_named(text, str(path)), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _named(text: str, name: str) -> io.StringIO:
    """A YAML stream whose marks carry `name` (the file's path) in error messages."""
    stream = io.StringIO(text)
    stream.name = name
    return stream


def typed_cli_overrides(overrides: Any) -> Any:
    """Snakemake's `--config key=value` values with YAML types: Snakemake parses a nested value
    such as `kd='{lam: 0.7}'` with YAML's BaseLoader, which leaves every scalar a string
    (`{'lam': '0.7'}`), so the schema would refuse it; each string is read again as YAML."""
    if isinstance(overrides, Mapping):
        return {key: typed_cli_overrides(value) for key, value in overrides.items()}
    if isinstance(overrides, list):
        return [typed_cli_overrides(value) for value in overrides]
    if isinstance(overrides, str):
        try:
            return yaml.safe_load(overrides) if overrides.strip() else overrides
        except yaml.YAMLError:
            return overrides
    return overrides
