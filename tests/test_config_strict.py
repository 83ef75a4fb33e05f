"""Configs that used to pass validation and then trained something else, or failed late inside a
job: integer keys given as floats, keys written twice, a static β of 0. Each stops at parse time
with a message naming the key, or the file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.errors import ConfigError
from sekd.plan.config import check_config_file, load_config, typed_cli_overrides, validate_config
from sekd.plan.variants import Variant, format_number, make_variant

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
MINI = ROOT / "config" / "mini.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("seeds: [1.0]\n", "seeds.0"),
        ("data: {max_train_pairs: 20.0}\n", "data.max_train_pairs"),
        ("training: {batch_size: 16.0}\n", "training.batch_size"),
        ("training: {max_length: 512.0}\n", "training.max_length"),
        ("decoding: {num_beams: 1.0}\n", "decoding.num_beams"),
        ("teacher_store: {samples: 64.0}\n", "teacher_store.samples"),
        ("models: {student: {init: {hidden_size: 64.0}}}\n", "models.student.init.hidden_size"),
        ("seeds: [true]\n", "seeds.0"),
    ],
)
def test_integer_keys_refuse_floats_and_booleans(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}': .* is not of type 'integer'"):
        load_config(PAPER, MINI, write(tmp_path, text))


def test_float_keys_still_take_integers(tmp_path):
    config = load_config(PAPER, write(tmp_path, "kd: {lam: 1, top_k_percent: 20}\n"))
    assert config["kd"]["lam"] == 1


@pytest.mark.parametrize(
    ("text", "line", "first"),
    [
        ("kd:\n  lam: 0.5\n  beta: 0.3\n  lam: 0.7\n", 4, 2),
        ("seeds: [1]\nkd: {lam: 0.5}\nseeds: [2]\n", 3, 1),
        ("training: {epochs: 1, epochs: 2}\n", 1, 1),
    ],
)
def test_duplicate_keys_name_file_and_line(tmp_path, text, line, first):
    path = write(tmp_path, text)
    message = rf"{path}:{line}: duplicate key .* \(first on line {first}\)"
    with pytest.raises(ConfigError, match=message):
        check_config_file(path)
    with pytest.raises(ConfigError, match=message):
        load_config(PAPER, path)


def test_shipped_configs_have_no_duplicate_keys():
    for path in [*sorted((ROOT / "config").glob("*.yaml")), ROOT / "tests" / "micro.yaml"]:
        check_config_file(path)


def test_snakemake_stops_on_a_duplicate_key_in_a_configfile(tmp_path):
    path = write(tmp_path, "kd:\n  gamma: 0.4\n  gamma: 0.6\n")
    cmd = [str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(MINI), str(path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert proc.returncode != 0
    assert f"{path}:3: duplicate key 'gamma' (first on line 2)" in proc.stdout + proc.stderr


def test_a_static_beta_of_zero_is_refused(tmp_path):
    """β = 0 makes the proxy of eq. 6 the target itself: SKEW KD's loss and gradient are 0."""
    with pytest.raises(ConfigError, match=r"config key 'kd.beta'"):
        load_config(PAPER, write(tmp_path, "kd: {beta: 0}\n"))
    assert load_config(PAPER, write(tmp_path, "kd: {beta: 0.01}\n"))["kd"]["beta"] == 0.01


@pytest.mark.parametrize(
    ("raw", "typed"),
    [
        ({"kd": {"lam": "0.7"}}, {"kd": {"lam": 0.7}}),
        ({"seeds": ["1", "2"]}, {"seeds": [1, 2]}),
        ({"scoring": {"comet_model": "null"}}, {"scoring": {"comet_model": None}}),
        ({"models": {"student": {"pretrained": "huggyllama/llama-7b"}}},
         {"models": {"student": {"pretrained": "huggyllama/llama-7b"}}}),
        ({"training": {"select_best_sft": "false"}}, {"training": {"select_best_sft": False}}),
    ],
)  # fmt: skip
def test_cli_overrides_are_read_as_yaml(raw, typed):
    assert typed_cli_overrides(raw) == typed


def test_snakemake_takes_a_nested_config_override(tmp_path):
    """`--config kd='{lam: 0.7}'` used to be refused ('0.7' is not a number); now it plans the
    λ = 0.7 runs, and a wrong value still names its key."""
    cmd = [str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path),
           "results/table1.csv", "--configfile", str(MINI)]  # fmt: skip
    env = {**os.environ}
    proc = subprocess.run(
        [*cmd, "--config", "kd={lam: 0.7}"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "forward_kd-lam0.7/" in proc.stdout
    proc = subprocess.run(
        [*cmd, "--config", "kd={gamma: fast}"], capture_output=True, text=True, env=env
    )
    assert proc.returncode != 0
    assert "config key 'kd.gamma': 'fast' is not of type 'number'" in proc.stdout + proc.stderr


def test_a_relative_data_mirror_in_the_environment_is_refused():
    config = load_config(PAPER)
    with pytest.raises(ConfigError, match=r"\$SEKD_DATA_MIRROR='shared/alma': give an absolute"):
        validate_config(config, environ={"SEKD_DATA_MIRROR": "shared/alma"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {student: {pretrained: /no/such/llama-7b}}\n",
         r"'models.student.pretrained': '/no/such/llama-7b' is not a directory"),
        ("models: {teacher: {pretrained: ./weights/llama-13b}}\n",
         r"'models.teacher.pretrained': './weights/llama-13b' is not a directory"),
        ("models: {teacher: {pretrained: cache/huggyllama/llama-13b}}\n",
         r"'models.teacher.pretrained': 'cache/huggyllama/llama-13b' is not a directory"),
        ("models: {teacher: {pretrained: 'llama 13b'}}\n",
         r"'models.teacher.pretrained': 'llama 13b' is neither a directory nor a hub id"),
    ],
)  # fmt: skip
def test_a_missing_local_model_path_stops_the_plan(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PAPER, write(tmp_path, text))


def test_hub_ids_and_existing_directories_are_accepted(tmp_path):
    (tmp_path / "llama").mkdir()
    local = tmp_path / "llama"
    text = f"models: {{student: {{pretrained: {local}}}, teacher: {{pretrained: org/m}}}}\n"
    config = load_config(PAPER, write(tmp_path, text))
    assert config["models"]["teacher"]["pretrained"] == "org/m"


def test_kv_heads_must_divide_the_attention_heads(tmp_path):
    text = "models: {student: {init: {num_attention_heads: 4, num_key_value_heads: 3}}}\n"
    with pytest.raises(
        ConfigError, match=r"'models.student.init.num_key_value_heads': must divide"
    ):
        load_config(PAPER, MINI, write(tmp_path, text))
    ok = "models: {student: {init: {num_attention_heads: 4, num_key_value_heads: 2}}}\n"
    assert load_config(PAPER, MINI, write(tmp_path, ok))["models"]["student"]["init"]


def test_run_names_keep_every_value_exactly():
    """Two values never share a run name (the name must not round), and the value itself travels
    (Variant.values: the kd rule's `run` param), not its text."""
    tiny = make_variant("sekd", {"lam": 0.5, "beta": 0.5, "gamma": 1e-7})
    assert tiny.name == "sekd-lam0.5-beta0.5-gamma0.0000001"
    assert Variant.from_values(tiny.values()).hparams["gamma"] == 1e-7
    assert tiny.name != make_variant("sekd", {"lam": 0.5, "beta": 0.5, "gamma": 0}).name
    close = {make_variant("sekd", {"lam": 0.5, "beta": 0.5, "gamma": g}).name
             for g in (0.1234567, 0.1234568)}  # fmt: skip
    assert len(close) == 2
    for x in (1 / 3, 0.1 + 0.2, 123.456, 5e-324):
        assert float(format_number(x)) == x


def test_a_sweep_value_given_twice_is_refused(tmp_path):
    text = "figures: {fig2a: {gamma: [0.2, 0.4, 0.4]}}\n"
    with pytest.raises(ConfigError, match=r"config key 'figures.fig2a.gamma': .* non-unique"):
        load_config(PAPER, write(tmp_path, text))


def test_invalid_yaml_in_the_workflow_config_names_file_and_line(tmp_path):
    """A syntax error in config/config.yaml or config/paper.yaml stops the plan naming the file
    and line (Snakemake's own message names neither)."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(
        ROOT / "workflow", copy / "workflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "config", copy / "config")
    paper = copy / "config" / "paper.yaml"
    paper.write_text(paper.read_text() + "tables: [oops\n", encoding="utf-8")
    cmd = [str(SNAKEMAKE), "-n", "-s", str(copy / "workflow" / "Snakefile"), "-d", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = len(paper.read_text().splitlines())
    assert f"{paper}: not valid YAML" in output
    assert f'in "{paper}", line {lines + 1}' in output
