"""Config validation: the shipped configs pass; malformed ones fail with the offending key named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import fake_mirror

from sekd.errors import ConfigError
from sekd.plan.config import deep_merge, load_config, load_schema, validate_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
MINI = ROOT / "config" / "mini.yaml"


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load(PAPER.read_text())


def test_paper_config_describes_the_paper():
    config = load_config(PAPER)
    assert config["models"]["student"]["pretrained"] == "huggyllama/llama-7b"
    assert config["models"]["teacher"]["pretrained"] == "huggyllama/llama-13b"
    assert config["models"]["teacher_l"]["pretrained"] == "huggyllama/llama-30b"
    t = config["training"]
    assert (t["epochs"], t["batch_size"], t["learning_rate"], t["warmup_ratio"]) == (
        3,
        128,
        2e-5,
        0.03,
    )
    assert t["max_length"] == 512
    assert (config["kd"]["lam"], config["kd"]["beta"], config["kd"]["gamma"]) == (0.5, 0.5, 0.4)
    assert config["decoding"]["num_beams"] == 1
    assert config["data"]["test_directions"] == ["en-de", "de-en", "en-cs", "cs-en"]


def test_mini_overrides_into_tiny_models():
    config = load_config(PAPER, MINI)
    for name in ("student", "teacher", "teacher_l"):
        assert config["models"][name]["pretrained"] is None
        assert config["models"][name]["init"]["hidden_size"] > 0
    assert config["tokenizer"]["train"]["vocab_size"] == 2000
    # untouched keys keep the paper's values
    assert config["kd"]["gamma"] == 0.4


def test_defaults_are_filled_from_the_schema():
    config = load_config(PAPER)
    assert config["models"]["student"]["init"] is None
    minimal = {
        "data": {"sha256": yaml.safe_load(PAPER.read_text())["data"]["sha256"]},
        "models": {
            "student": {"pretrained": "x"},
            "teacher": {"pretrained": "y"},
            "teacher_l": {"pretrained": "z"},
        },
        "languages": {"en": "English", "de": "German", "cs": "Czech"},
    }
    config = validate_config(minimal, environ={})
    assert config["training"]["batch_size"] == 128
    assert config["tables"]["table1"]["objectives"][-1] == "sekd"
    assert config["tables"]["table2"]["teacher"] == "teacher_l"
    assert config["figures"]["fig5"]["lam"] == [0.3, 0.5, 0.7, 1.0]
    assert config["models"]["student"]["dtype"] == "bfloat16"
    assert config["models"]["student"]["trust_remote_code"] is False


def test_every_schema_key_has_a_description_and_a_default():
    schema = load_schema()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            where = f"{path}.{key}".lstrip(".")
            assert "description" in sub or "$ref" in sub, f"{where} has no description"
            assert "default" in sub, f"{where} has no default"
            walk(sub, where)
        for sub in node.get("$defs", {}).values():
            walk(sub, path)

    walk(schema, "")


def test_the_schema_file_names_no_objective():
    """Objective names reach the schema only through `$defs.objective`, filled from the registry
    (defaults are values, not declarations, and descriptions are prose)."""
    from sekd.plan.objectives import OBJECTIVES
    from sekd.plan.schema import SCHEMA_PATH

    raw = yaml.safe_load(SCHEMA_PATH.read_text())
    assert "enum" not in raw["$defs"]["objective"]

    def strings(node, key=None):
        if key in ("default", "description"):
            return
        if isinstance(node, dict):
            for k, v in node.items():
                yield from strings(k)
                yield from strings(v, k)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node

    assert not set(strings(raw)) & set(OBJECTIVES)


def test_the_loaded_objective_enum_is_the_registry():
    from sekd.plan.objectives import kd_objectives

    schema = load_schema()
    assert schema["$defs"]["objective"]["enum"] == kd_objectives()
    assert schema["$defs"]["objectives"]["items"] == {"$ref": "#/$defs/objective"}
    tables = schema["properties"]["tables"]["properties"]
    assert tables["baseline"]["$ref"] == "#/$defs/objective"


def test_mirror_from_the_environment(paper, tmp_path):
    fake_mirror(tmp_path, paper["data"]["sha256"])
    config = validate_config(paper, environ={"SEKD_DATA_MIRROR": str(tmp_path)})
    assert config["data"]["mirror"] == str(tmp_path)


def _set(config: dict, dotted: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return config


_DELETE = object()

# (dotted key to change, new value, text the error must contain: the key as a user would find it)
MALFORMED = [
    ("bogus", 1, "'bogus': unknown key"),
    ("training.lr", 1e-5, "'training.lr': unknown key"),
    ("training.learning_rate", "2e-5x", "'training.learning_rate'"),
    ("training.learning_rate", 0, "'training.learning_rate'"),
    ("training.epochs", "three", "'training.epochs'"),
    ("training.batch_size", 12.5, "'training.batch_size'"),
    ("training.per_device_batch_size", 5, "'training.per_device_batch_size': must divide"),
    ("training.warmup_ratio", 1.5, "'training.warmup_ratio'"),
    ("training.lr_scheduler", "exponential", "'training.lr_scheduler'"),
    ("training.max_length", 4, "'training.max_length'"),
    ("training.deepspeed", "config/deepspeed/zero3.yaml", "'training.deepspeed'"),
    ("training.nproc_per_node", 0, "'training.nproc_per_node'"),
    ("training.save_steps", 0, "'training.save_steps'"),
    ("kd.lam", 1.5, "'kd.lam'"),
    ("kd.beta", -0.1, "'kd.beta'"),
    ("kd.gamma", "high", "'kd.gamma'"),
    ("kd.top_k_percent", 120, "'kd.top_k_percent'"),
    ("tables.table1.teacher", "teacher_xl", "'tables.table1.teacher': no model"),
    ("tables.table2.objectives", ["sekd", "magic_kd"], "'tables.table2.objectives.1'"),
    ("tables.table1.objectives", [], "'tables.table1.objectives'"),
    ("tables.baseline", "sft", "'tables.baseline'"),
    ("figures.fig2a.gamma", [0.4, "x"], "'figures.fig2a.gamma.1'"),
    ("figures.fig3.beta_schedules", [[0.5]], "'figures.fig3.beta_schedules.0'"),
    ("figures.fig5.evalset", "wmt23", "'figures.fig5.evalset'"),
    ("scoring.comet_batch_size", 0, "'scoring.comet_batch_size'"),
    ("models.student.pretrained", None, "'models.student': set exactly one"),
    ("models.student.init", {"hidden_size": 64}, "'models.student.init'"),
    ("models.student.dtype", "float8", "'models.student.dtype'"),
    ("models.student.trust_remote_code", "yes", "'models.student.trust_remote_code'"),
    ("models.teacher", _DELETE, "'models': 'teacher' is a required property"),
    ("models.Teacher-2", {"pretrained": "x"}, "'models.Teacher-2': invalid name"),
    ("data.pairs", ["de-fr"], "'data.pairs.0'"),
    ("data.pairs", "de-en", "'data.pairs'"),
    ("data.test_directions", ["en-en"], "'data.test_directions': 'en-en' must pair English"),
    ("data.test_directions", ["en-is"], "'data.sha256': no checksum for 'isen/test.en-is.json'"),
    ("data.test_directions", ["en-xx"], "'languages': no name for 'xx'"),
    ("data.sha256", {"deen/train.de-en.de": "abc"}, "'data.sha256.deen/train.de-en.de'"),
    ("data.max_train_pairs", 0, "'data.max_train_pairs'"),
    ("data.mirror", "/nonexistent/mirror", "'data.mirror'"),
    ("tokenizer.from_model", "nobody", "'tokenizer.from_model': no model"),
    ("tokenizer.train", {"vocab_size": 500}, "'tokenizer': set exactly one"),
    ("decoding.num_beams", 0, "'decoding.num_beams'"),
    ("decoding.temperature", 0.7, "'decoding.temperature': unknown key"),
    ("scoring.tokenize", "moses", "'scoring.tokenize'"),
    ("seeds", [], "'seeds'"),
    ("seeds", [1, 1], "'seeds'"),
    ("languages.de", "", "'languages.de'"),
]


@pytest.mark.parametrize(("key", "value", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_the_key(paper, key, value, expected):
    bad = _set(paper, key, value)
    with pytest.raises(ConfigError) as info:
        validate_config(bad, environ={})
    assert expected in str(info.value)


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 20


def test_all_errors_are_reported_at_once(paper):
    bad = _set(_set(paper, "kd.lam", 2), "decoding.num_beams", 0)
    with pytest.raises(ConfigError) as info:
        validate_config(bad, environ={})
    assert "'kd.lam'" in str(info.value) and "'decoding.num_beams'" in str(info.value)


def test_yaml_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_config(PAPER, broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml"):
        load_config(PAPER, listy)


def test_deep_merge_is_recursive_and_pure():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    merged = deep_merge(base, {"a": {"b": 3}, "d": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}
