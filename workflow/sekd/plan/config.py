"""Configuration: load, merge, validate against the JSON schema, fill defaults, check consistency.

Every error names the offending key as a dotted path (``training.learning_rate``) so a user can
find it in their YAML. Torch-free: the Snakefile calls `validate_config` at parse time.
"""

from __future__ import annotations

import copy
import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sekd.data import alma as data
from sekd.errors import ConfigError
from sekd.plan.objectives import HPARAMS, OBJECTIVES, RUN_OPTIONS, kd_objectives, param_symbols
from sekd.plan.schema import raw
from sekd.plan.study import PAPER_PATH, load_paper, table_names
from sekd.plan.study import consistency_errors as study_errors
from sekd.plan.yaml_loader import parse_yaml, read_yaml

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


def read_config_file(path: str | Path) -> dict:
    """The keys of config file `path`, read by the workflow's YAML loader (`sekd.plan.yaml_loader`:
    `2e-5` is a number, a key written twice an error); ConfigError naming the file otherwise."""
    try:
        loaded = read_yaml(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return loaded


def load_config(*paths: str | Path, environ: dict | None = None) -> dict:
    """Merge YAML files left to right (later files override) and validate the result; an error
    names the file that set the key at fault (`validate_sources`)."""
    return validate_sources(
        [(str(path), read_config_file(path)) for path in paths], environ=environ
    )


def workflow_sources(
    workflow_files: Iterable[str | Path],
    configfiles: Iterable[str | Path],
    cli: Mapping[str, Any],
    replace: bool = False,
) -> list[tuple[str, dict]]:
    """The config sources of a Snakemake run in Snakemake's order, each read by the workflow's
    loader (Snakemake's own reading leaves `2e-5` a string): the Snakefile's `configfile:` files
    (none with `--replace-workflow-config`), the `--configfile` files, the `--config` values
    (`typed_cli_overrides`)."""
    files = [*([] if replace else workflow_files), *configfiles]
    sources = [(str(path), read_config_file(path)) for path in files]
    return [*sources, ("--config", typed_cli_overrides(dict(cli)))]


def validate_sources(sources: list[tuple[str, dict]], *, environ: dict | None = None) -> dict:
    """`validate_config` of the (name, keys) sources merged left to right; each line of an error
    names the sources that set its key (`(set in my.yaml)`)."""
    merged: dict = {}
    for _, keys in sources:
        merged = deep_merge(merged, keys)
    try:
        return validate_config(merged, environ=environ)
    except ConfigError as error:
        environ = os.environ if environ is None else environ
        named = [(str(PAPER_PATH), load_paper()), *sources]
        if environ.get(MIRROR_ENV):
            named.append((f"${MIRROR_ENV}", {"data": {"mirror": environ[MIRROR_ENV]}}))
        raise ConfigError(_name_sources(str(error), named)) from None


KEY_IN_MESSAGE = re.compile(r"config key '([^']+)'")
_MISSING = object()


def _name_sources(message: str, sources: list[tuple[str, dict]]) -> str:
    """`message` with each line that names a config key followed by the sources that set it."""
    lines = []
    for line in message.split("\n"):
        match = KEY_IN_MESSAGE.search(line)
        names = ", ".join(_setters(match[1], sources)) if match else ""
        lines.append(f"{line} (set in {names})" if names else line)
    return "\n".join(lines)


def _setters(dotted: str, sources: list[tuple[str, dict]]) -> list[str]:
    """The names of the sources that set dotted key `dotted`: the last one for a value (it
    replaced the others), every one for a section (they merge)."""
    found = [
        (name, value) for name, keys in sources if (value := _lookup(keys, dotted)) is not _MISSING
    ]
    if found and not isinstance(found[-1][1], dict):
        found = found[-1:]
    return list(dict.fromkeys(name for name, _ in found))


def _lookup(node: Any, dotted: str) -> Any:
    """The value at dotted key `dotted` of `node` (a key may itself hold dots: data.sha256's file
    names), list items by index; _MISSING when it has none."""
    if isinstance(node, dict):
        for key, value in node.items():
            key = str(key)
            if dotted == key:
                return value
            if dotted.startswith(f"{key}."):
                found = _lookup(value, dotted[len(key) + 1 :])
                if found is not _MISSING:
                    return found
    elif isinstance(node, list):
        head, _, rest = dotted.partition(".")
        if head.isdigit() and int(head) < len(node):
            return node[int(head)] if not rest else _lookup(node[int(head)], rest)
    return _MISSING


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


def _local_json(directory: Path, name: str) -> dict | None:
    """The JSON object of file `name` of a local model directory; None without one (or when it
    is not an object: the job reports that)."""
    path = directory / name
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _local_tokens(directory: Path) -> dict[int, str] | None:
    """{id: token} of a local directory's tokenizer.json (its vocabulary, then its added tokens),
    read without transformers; None without one (or of a kind not read here)."""
    spec = _local_json(directory, "tokenizer.json")
    vocab = ((spec or {}).get("model") or {}).get("vocab")
    if isinstance(vocab, dict):  # BPE, WordPiece: token -> id
        tokens = {i: token for token, i in vocab.items()}
    elif isinstance(vocab, list):  # Unigram: [piece, score] by id
        tokens = {
            i: piece[0] if isinstance(piece, list) else piece for i, piece in enumerate(vocab)
        }
    else:
        return None
    return {**tokens, **{token["id"]: token["content"] for token in spec.get("added_tokens") or []}}


def _local_tokenizer_size(directory: Path) -> int | None:
    """Entries of a local directory's tokenizer.json (vocabulary and added tokens), read without
    transformers; None without one (or of a kind not read here)."""
    tokens = _local_tokens(directory)
    return None if tokens is None else len(tokens)


def _local_dir(model: dict) -> Path | None:
    """A model's `pretrained` when it is a local directory (what the plan can read); None for a
    model built from `init` or a hub id (checked by its jobs, when they load it)."""
    if model["pretrained"] is None:
        return None
    path = Path(model["pretrained"]).expanduser()
    return path if path.is_dir() else None


def _workflow_tokenizer(config: dict) -> Path | None:
    """The local directory of the workflow's tokenizer (tokenizer.from_model's `pretrained`);
    None when the workflow trains its own or the model is not local."""
    name = config["tokenizer"]["from_model"]
    model = config["models"].get(name or "")
    return _local_dir(model) if model else None


def _local_vocab_size(directory: Path) -> int | None:
    """vocab_size of a local model directory's config.json, None without one."""
    size = (_local_json(directory, "config.json") or {}).get("vocab_size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _local_vocab_errors(config: dict) -> list[str]:
    """At plan time where both are on disk: a local `pretrained` model whose config.json
    vocab_size is smaller than the tokenizer that `tokenizer.from_model` names (its job would
    stop at start; built `init` models take the tokenizer's size, hub models are checked then)."""
    source = _workflow_tokenizer(config)
    entries = _local_tokenizer_size(source) if source else None
    if entries is None:
        return []
    errors = []
    for name, model in config["models"].items():
        path = _local_dir(model)
        size = _local_vocab_size(path) if path else None
        if size is not None and size < entries:
            errors.append(
                f"config key 'models.{name}.pretrained': {model['pretrained']} has vocab_size "
                f"{size} (config.json), fewer than the {entries} entries of the workflow's "
                f"tokenizer (tokenizer.from_model: {source}/tokenizer.json)"
            )
    return errors


def _local_model_errors(config: dict) -> list[str]:
    """What the plan can read of the models before any job loads them: positions for
    training.max_length (local config.json, or `init`), and a teacher's vocabulary and tokenizer
    against the student's and the workflow's (local directories). Hub ids are left to their jobs
    (nothing is downloaded at plan time)."""
    errors = _position_errors(config) + _teacher_vocab_errors(config)
    source = _workflow_tokenizer(config)
    mine = _local_tokens(source) if source else None
    for name, model in config["models"].items():
        path = _local_dir(model)
        theirs = _local_tokens(path) if mine and path and path != source else None
        moved = [token for i, token in mine.items() if theirs.get(i) != token] if theirs else []
        if moved:
            errors.append(
                f"config key 'models.{name}.pretrained': {path}/tokenizer.json gives {len(moved)} "
                f"of the workflow's tokens other ids or none ({sorted(moved)[:3]!r}...) than "
                f"{source}/tokenizer.json (tokenizer.from_model): every model must share the "
                "workflow's tokenizer (a teacher's may only add tokens after it)"
            )
    return errors


def _position_errors(config: dict) -> list[str]:
    """A model with fewer positions (max_position_embeddings) than training.max_length: built
    from `init`, or a local directory whose config.json has no rope_scaling (which stretches
    them)."""
    errors, length = [], config["training"]["max_length"]
    for name, model in config["models"].items():
        path = _local_dir(model)
        if model["init"]:
            positions = model["init"]["max_position_embeddings"]
            key, what = f"models.{name}.init.max_position_embeddings", str(positions)
        elif path:
            spec = _local_json(path, "config.json") or {}
            positions = None if spec.get("rope_scaling") else spec.get("max_position_embeddings")
            key = f"models.{name}.pretrained"
            what = f"{path}/config.json has max_position_embeddings {positions}"
        else:
            continue
        if isinstance(positions, int) and positions < length:
            errors.append(
                f"config key '{key}': {what}, fewer positions than training.max_length "
                f"({length}): the model would train on sequences longer than it has positions for"
            )
    return errors


def _teachers(config: dict) -> list[str]:
    """The models the plan distils from: the tables', figures' and sensitivity study's teachers."""
    named = [config["tables"][table]["teacher"] for table in table_names(config)]
    named += [f.get("teacher") for f in config["figures"].values()]
    named.append(config["sensitivity"].get("teacher"))
    return [n for n in dict.fromkeys(named) if n in config["models"] and n != "student"]


def _model_vocab(config: dict, name: str, entries: int | None) -> tuple[int, str] | None:
    """(vocabulary size, where it is read) of a model, when the plan can know it: a local
    directory's config.json, or the workflow tokenizer's `entries` for a model built from
    `init`."""
    model = config["models"][name]
    path = _local_dir(model)
    size = _local_vocab_size(path) if path else None
    if size is not None:
        return size, f"{path}/config.json"
    if model["init"] and entries is not None:
        return entries, "built from init with the workflow's tokenizer"
    return None


def _teacher_vocab_errors(config: dict) -> list[str]:
    """A teacher whose vocabulary is smaller than the student's (its jobs would refuse it: the KD
    losses compare distributions over the student's vocabulary, eqs. 3-10)."""
    source = _workflow_tokenizer(config)
    entries = _local_tokenizer_size(source) if source else None
    student = _model_vocab(config, "student", entries)
    errors = []
    for name in _teachers(config) if student else []:
        teacher = _model_vocab(config, name, entries)
        if teacher is not None and teacher[0] < student[0]:
            part = "pretrained" if config["models"][name]["pretrained"] else "init"
            errors.append(
                f"config key 'models.{name}.{part}': a teacher's vocabulary of {teacher[0]} "
                f"({teacher[1]}) is smaller than the student's {student[0]} ({student[1]}); "
                "the KD losses compare distributions over the student's vocabulary"
            )
    return errors


def _consistency_errors(config: dict) -> list[str]:
    """Checks a schema cannot express: cross-references between keys, section by section."""
    errors = _model_errors(config) + _tokenizer_errors(config) + study_errors(config)
    errors += _local_model_errors(config)
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
    errors += _validation_errors(config)
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
        if (
            init.get("pretrain_steps")
            and config["pretrain"]["block_size"] > init["max_position_embeddings"]
        ):
            errors.append(
                f"config key 'pretrain.block_size': {config['pretrain']['block_size']} tokens is "
                f"more than models.{name}.init.max_position_embeddings "
                f"({init['max_position_embeddings']}), the longest sequence it can be pretrained on"
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


def _validation_errors(config: dict) -> list[str]:
    """An empty data.valid_directions where something reads the validation set: an SFT selection
    by it (it would keep the last checkpoint without a word), a figure of it."""
    if config["data"]["valid_directions"]:
        return []
    errors = []
    training = config["training"]
    selection = training["sft_selection"] if training["select_best_sft"] else "last"
    if selection != "last":
        errors.append(
            f"config key 'data.valid_directions': empty, but training.sft_selection is "
            f"{selection} (the SFT checkpoint is chosen on the validation set); name validation "
            "directions, or set training.sft_selection: last to keep the last checkpoint"
        )
    for name, f in config["figures"].items():
        if f["kind"] != "curve" and f["evalset"] == "valid":
            errors.append(
                f"config key 'figures.{name}.evalset': valid, but data.valid_directions is "
                "empty (the figure would have no scores)"
            )
    return errors


def _data_errors(d: dict, languages: dict) -> list[str]:
    """`data`: English pairs in the ALMA layout, a language name and a checksum for every file
    the study reads, a URL, and a mirror that exists and holds those files."""
    errors: list[str] = []
    needed: dict[str, tuple[str, str]] = {}  # relpath: (key, item) of the first that reads it
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
            for relpath in result if isinstance(result, tuple) else [result]:
                needed.setdefault(relpath, (f"data.{key}", item))
    for relpath in needed:
        if relpath not in d["sha256"]:
            errors.append(f"config key 'data.sha256': no checksum for {relpath!r}")
    return errors + _url_errors(d["url"]) + _source_errors(d, needed)


# The schemes the fetch reads (urllib): upstream over http(s), a local copy as file://.
URL_SCHEMES = ("http", "https", "file")


def _url_errors(url: str) -> list[str]:
    """data.url is an http(s) URL with a host, or a file:// URL with a path."""
    parts = urllib.parse.urlsplit(url)
    host_or_path = parts.path if parts.scheme == "file" else parts.netloc
    if parts.scheme in URL_SCHEMES and host_or_path and not any(c.isspace() for c in url):
        return []
    return [
        f"config key 'data.url': {url!r} is not a URL ({', '.join(URL_SCHEMES)}, e.g. "
        "https://host/path or file:///path/human_written_data)"
    ]


def _source_errors(d: dict, needed: dict[str, tuple[str, str]]) -> list[str]:
    """Where the plan can look (data.mirror or $SEKD_DATA_MIRROR, or a file:// data.url): the
    files the study reads are there (else their fetch jobs would fail). A remote URL is left to
    the fetch."""
    if d["mirror"] is not None:
        source, root = f"the data mirror (data.mirror or ${MIRROR_ENV})", Path(d["mirror"])
        if not root.is_dir():
            return [
                f"config key 'data.mirror' (or ${MIRROR_ENV}): {d['mirror']!r} is not a directory"
            ]
        if not (root / data.DATA_SUBDIR).is_dir():
            return [
                f"config key 'data.mirror' (or ${MIRROR_ENV}): {d['mirror']!r} has no "
                f"{data.DATA_SUBDIR}/ folder (ALMA's layout)"
            ]
        root = root / data.DATA_SUBDIR
    elif urllib.parse.urlsplit(d["url"]).scheme == "file":
        source = "data.url"
        root = Path(urllib.request.url2pathname(urllib.parse.urlsplit(d["url"]).path))
    else:
        return []
    return [
        f"config key '{key}': {item!r} needs {root / relpath}, missing from {source}"
        for relpath, (key, item) in needed.items()
        if not (root / relpath).is_file()
    ]


def check_config_file(path: str | Path) -> None:
    """Raise ConfigError, naming the file and line, for invalid YAML or a duplicate key."""
    try:
        read_yaml(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def typed_cli_overrides(overrides: Any) -> Any:
    """Snakemake's `--config key=value` values with YAML types: Snakemake parses a nested value
    such as `kd='{lam: 0.7}'` with YAML's BaseLoader, which leaves every scalar a string
    (`{'lam': '0.7'}`), so the schema would refuse it; each string is read again by the workflow's
    YAML loader (`training='{learning_rate: 2e-5}'` is the number 2e-5)."""
    if isinstance(overrides, Mapping):
        return {key: typed_cli_overrides(value) for key, value in overrides.items()}
    if isinstance(overrides, list):
        return [typed_cli_overrides(value) for value in overrides]
    if isinstance(overrides, str):
        try:
            return parse_yaml(overrides, "--config") if overrides.strip() else overrides
        except yaml.YAMLError:
            return overrides
    return overrides
