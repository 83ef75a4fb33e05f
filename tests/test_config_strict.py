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


# --- issue 23, item 6: numbers as people write them ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "section", "key", "value"),
    [
        ("training: {learning_rate: 2e-5}\n", "training", "learning_rate", 2e-5),
        ("training: {learning_rate: 1E-3}\n", "training", "learning_rate", 1e-3),
        ("training: {learning_rate: 2.0e5}\n", "training", "learning_rate", 2e5),
        ("training: {learning_rate: .5e-3}\n", "training", "learning_rate", 5e-4),
        ("kd: {gamma: 4e-1}\n", "kd", "gamma", 0.4),
        ("kd: {top_k_percent: 2E1}\n", "kd", "top_k_percent", 20),
    ],
)
def test_exponent_numbers_are_numbers_in_config_files(tmp_path, text, section, key, value):
    """`2e-5` (YAML 1.2, every HF recipe) used to be the string '2e-5' (YAML 1.1) and refused."""
    path = write(tmp_path, text)
    check_config_file(path)
    planned = load_config(PAPER, path)[section][key]
    assert planned == value and isinstance(planned, float)


@pytest.mark.parametrize("text", ["1e", "e5", "1.2.3", "7e10abc", "2e-5x", "1e5.0", "1_e5"])
def test_only_numbers_become_numbers(text):
    from sekd.plan.yaml_loader import parse_yaml

    assert parse_yaml(f"v: {text}\n", "t.yaml") == {"v": text}
    assert typed_cli_overrides({"v": text}) == {"v": text}


def test_the_loader_leaves_pyyaml_itself_alone():
    import yaml

    from sekd.plan.yaml_loader import parse_yaml

    assert parse_yaml("v: 2e-5\n", "t.yaml") == {"v": 2e-5}
    assert yaml.safe_load("v: 2e-5\n") == {"v": "2e-5"}  # yaml.SafeLoader unchanged


def test_a_hash_like_revision_stays_a_string(tmp_path):
    text = "models: {teacher: {pretrained: org/m, revision: 7e10abc}}\n"
    assert load_config(PAPER, write(tmp_path, text))["models"]["teacher"]["revision"] == "7e10abc"


def test_exponent_numbers_are_numbers_in_cli_overrides():
    typed = typed_cli_overrides({"training": {"learning_rate": "2e-5"}, "kd": {"gamma": "4E-1"}})
    assert typed == {"training": {"learning_rate": 2e-5}, "kd": {"gamma": 0.4}}
    config = validate_config({**load_config(PAPER), **typed}, environ={})
    assert config["training"]["learning_rate"] == 2e-5


def test_snakemake_plans_exponent_numbers_from_files_and_the_command_line(tmp_path):
    """Snakemake reads config files as YAML 1.1 (`2e-5` a string): the plan reads them again with
    the workflow's loader, and the --config values too. An error names the source of its key."""
    mine = write(tmp_path, "kd: {gamma: 4e-1}\ntraining: {weight_decay: 1e-2}\n")
    cmd = [str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path),
           "results/table1.csv", "--configfile", str(MINI), str(mine)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SEKD_DATA_MIRROR"}
    proc = subprocess.run(
        [*cmd, "--config", "training={learning_rate: 2e-5}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sekd-lam0.5-beta0.5-gamma0.4/" in proc.stdout
    proc = subprocess.run(
        [*cmd, "--config", "figures={fig2b: {top_k_percent: [150]}}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    assert (
        "config key 'figures.fig2b.top_k_percent.0': top_k_percent must be in [0, 100], got 150 "
        "(the range of kd.top_k_percent) (set in --config)"
    ) in proc.stdout + proc.stderr


# --- issue 23, item 7: at plan time, not in a job ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("figures: {fig2b: {top_k_percent: [10, 150]}}\n",
         r"'figures.fig2b.top_k_percent.1': top_k_percent must be in \[0, 100\], got 150"),
        ("figures: {fig2c: {beta: [0, 0.5]}}\n",
         r"'figures.fig2c.beta.0': beta must be in \(0, 1\], got 0"),
        ("figures: {fig3: {beta_schedules: [[0.5, 1.5]]}}\n",
         r"'figures.fig3.beta_schedules.0': beta must be in \[0, 1\], got 1.5"),
        ("figures: {fig2a: {series: [{objective: sekd, fixed: {lam: 2}}]}}\n",
         r"'figures.fig2a.series.0.fixed.lam': lam must be in \[0, 1\], got 2"),
        ("sensitivity: {alternatives: [{option: norm, value: optimizer_batch, "
         "fixed: {gamma: -1}}]}\n",
         r"'sensitivity.alternatives.0.fixed.gamma': gamma must be in \[0, inf\), got -1"),
    ],
)  # fmt: skip
def test_a_figure_value_outside_its_range_stops_the_plan(tmp_path, text, message):
    """Checked against the range the hyper-parameter declares (sekd.plan.objectives.HPARAMS), as
    `kd` is; the error names the key and the file that set it."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(PAPER, path, environ={})
    assert f"(set in {path})" in str(info.value)


def test_the_shipped_figures_are_in_range():
    """fig3's schedule ends at β = 0: the loss's range (a schedule's end), not the config's."""
    assert load_config(PAPER, environ={})["figures"]["fig3"]["beta_schedules"] == [
        [0.5, 0.0],
        [0.9, 0.5],
    ]
    load_config(PAPER, MINI, environ={})
    load_config(PAPER, MINI, ROOT / "tests" / "micro.yaml", environ={})


def test_a_tokenizer_vocabulary_below_its_alphabet_stops_the_plan(tmp_path):
    path = write(tmp_path, "tokenizer: {train: {vocab_size: 200}}\n")
    with pytest.raises(
        ConfigError,
        match=r"config key 'tokenizer.train.vocab_size': 200 is less than the minimum of 260",
    ):
        load_config(PAPER, MINI, path, environ={})


def test_the_minimum_vocabulary_is_what_the_tokenizer_starts_with():
    """Below 260 entries (256 bytes, 4 special tokens) train_bpe ignores vocab_size."""
    pytest.importorskip("tokenizers")
    from sekd.data.tokenizer import train_bpe
    from sekd.plan.schema import entry

    minimum = entry("tokenizer")["properties"]["train"]["properties"]["vocab_size"]["minimum"]
    texts = ["Das Haus ist klein. The house is small."] * 20
    assert len(train_bpe(texts, vocab_size=minimum - 100)) == minimum
    assert len(train_bpe(texts, vocab_size=minimum + 5)) == minimum + 5


def test_a_built_model_with_fewer_positions_than_max_length_stops_the_plan(tmp_path):
    path = write(tmp_path, "models: {teacher: {init: {max_position_embeddings: 64}}}\n")
    with pytest.raises(
        ConfigError,
        match=r"config key 'models.teacher.init.max_position_embeddings': 64, fewer positions "
        r"than training.max_length \(352\)",  # config/mini.yaml's
    ) as info:
        load_config(PAPER, MINI, path, environ={})
    assert f"(set in {path})" in str(info.value)
    ok = write(tmp_path, "models: {teacher: {init: {max_position_embeddings: 352}}}\n", "ok.yaml")
    assert load_config(PAPER, MINI, ok, environ={})


# A tokenizer.json as the tokenizers library writes it, reduced to what the plan reads
TOKENS = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5}


def local_model(root: Path, tokens: dict | None = TOKENS, **config) -> Path:
    """A local model directory: config.json (`config`), and tokenizer.json of `tokens` unless
    None (weights are not read at plan time)."""
    import json

    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    if tokens is not None:
        spec = {"added_tokens": [], "model": {"type": "BPE", "vocab": tokens, "merges": []}}
        (root / "tokenizer.json").write_text(json.dumps(spec))
    return root


def models_yaml(tmp_path: Path, **dirs: Path) -> Path:
    entries = ", ".join(f"{name}: {{pretrained: {path}}}" for name, path in dirs.items())
    return write(tmp_path, f"models: {{{entries}}}\n")


def test_a_local_model_with_fewer_positions_than_max_length_stops_the_plan(tmp_path):
    student = local_model(tmp_path / "s", vocab_size=6, max_position_embeddings=2048)
    teacher = local_model(tmp_path / "t", vocab_size=6, max_position_embeddings=256)
    path = models_yaml(tmp_path, student=student, teacher=teacher)
    with pytest.raises(
        ConfigError,
        match=rf"config key 'models.teacher.pretrained': {teacher}/config.json has "
        r"max_position_embeddings 256, fewer positions than training.max_length \(512\)",
    ):
        load_config(PAPER, path, environ={})
    (teacher / "config.json").write_text(
        '{"vocab_size": 6, "max_position_embeddings": 256, "rope_scaling": {"factor": 4.0}}'
    )
    assert load_config(PAPER, path, environ={})  # stretched positions: left to the job


def test_a_teacher_vocabulary_smaller_than_the_students_stops_the_plan(tmp_path):
    student = local_model(tmp_path / "s", vocab_size=16)  # padded past its 6 tokens
    teacher = local_model(tmp_path / "t", vocab_size=8)
    path = models_yaml(tmp_path, student=student, teacher=teacher)
    with pytest.raises(
        ConfigError,
        match=rf"config key 'models.teacher.pretrained': a teacher's vocabulary of 8 "
        rf"\({teacher}/config.json\) is smaller than the student's 16 \({student}/config.json\)",
    ):
        load_config(PAPER, path, environ={})
    (teacher / "config.json").write_text('{"vocab_size": 32}')
    assert load_config(PAPER, path, environ={})


def test_a_teacher_with_another_tokenizer_stops_the_plan(tmp_path):
    student = local_model(tmp_path / "s", vocab_size=6)
    swapped = {**TOKENS, "a": 4, "b": 3}
    teacher = local_model(tmp_path / "t", tokens=swapped, vocab_size=6)
    path = models_yaml(tmp_path, student=student, teacher=teacher)
    with pytest.raises(
        ConfigError,
        match=rf"config key 'models.teacher.pretrained': {teacher}/tokenizer.json gives 2 of the "
        rf"workflow's tokens other ids or none \(\['a', 'b'\]...\) than {student}/tokenizer.json",
    ):
        load_config(PAPER, path, environ={})


def test_a_teacher_that_only_adds_tokens_and_hub_models_pass(tmp_path):
    student = local_model(tmp_path / "s", vocab_size=6)
    padded = local_model(tmp_path / "t", tokens={**TOKENS, "<pad>": 6}, vocab_size=7)
    assert load_config(PAPER, models_yaml(tmp_path, student=student, teacher=padded), environ={})
    # a hub teacher cannot be read offline: its jobs check it
    hub = write(
        tmp_path,
        f"models: {{student: {{pretrained: {student}}}, teacher: {{pretrained: org/m}}}}\n",
    )
    assert load_config(PAPER, hub, environ={})


def test_an_empty_validation_set_with_a_selection_by_it_stops_the_plan(tmp_path):
    """It used to keep the last SFT checkpoint without a word."""
    path = write(tmp_path, "data: {valid_directions: []}\n")
    with pytest.raises(ConfigError) as info:
        load_config(PAPER, path, environ={})
    message = str(info.value)
    assert (
        "config key 'data.valid_directions': empty, but training.sft_selection is valid_loss"
    ) in message
    assert f"(set in {path})" in message
    assert (
        "config key 'figures.fig2a.evalset': valid, but data.valid_directions is empty" in message
    )
    last = write(
        tmp_path,
        "data: {valid_directions: []}\ntraining: {sft_selection: last}\n"
        "figures: {fig2a: {evalset: wmt22}, fig2c: {evalset: wmt22}}\n",
        "last.yaml",
    )
    assert load_config(PAPER, last, environ={})["data"]["valid_directions"] == []


@pytest.mark.parametrize(
    "url", ["raw.githubusercontent.com/fe1ixxu/ALMA", "https//host/x", "https://", "ftp:x", "x y"]
)
def test_a_data_url_that_is_not_a_url_stops_the_plan(tmp_path, url):
    path = write(tmp_path, f"data: {{url: '{url}'}}\n")
    with pytest.raises(ConfigError, match=rf"config key 'data.url': '{url}' is not a URL") as info:
        load_config(PAPER, path, environ={})
    assert f"(set in {path})" in str(info.value)


def test_a_language_pair_missing_from_a_local_mirror_stops_the_plan(tmp_path):
    from conftest import fake_mirror

    config = load_config(PAPER, environ={})
    files = [f for f in config["data"]["sha256"] if not f.startswith("csen/")]
    mirror = fake_mirror(tmp_path / "mirror", files)
    with pytest.raises(ConfigError) as info:
        load_config(PAPER, environ={"SEKD_DATA_MIRROR": str(mirror)})
    message = str(info.value)
    missing = mirror / "human_written_data" / "csen" / "train.cs-en.cs"
    assert (
        f"config key 'data.pairs': 'cs-en' needs {missing}, missing from the data mirror "
        "(data.mirror or $SEKD_DATA_MIRROR)"
    ) in message
    assert "config key 'data.test_directions': 'en-cs' needs" in message
    assert "'de-en'" not in message
    fake_mirror(mirror, config["data"]["sha256"])
    assert load_config(PAPER, environ={"SEKD_DATA_MIRROR": str(mirror)})


def test_a_mirror_without_the_alma_layout_stops_the_plan(tmp_path):
    with pytest.raises(ConfigError, match=r"has no human_written_data/ folder"):
        load_config(PAPER, environ={"SEKD_DATA_MIRROR": str(tmp_path)})


def test_a_file_url_is_checked_like_a_mirror(tmp_path):
    from conftest import fake_mirror

    config = load_config(PAPER, environ={})
    root = fake_mirror(tmp_path / "alma", config["data"]["sha256"]) / "human_written_data"
    path = write(tmp_path, f"data: {{url: '{root.as_uri()}'}}\n")
    assert load_config(PAPER, path, environ={})
    (root / "deen" / "test.de-en.json").unlink()
    with pytest.raises(
        ConfigError,
        match=rf"config key 'data.test_directions': 'de-en' needs {root}/deen/test.de-en.json, "
        r"missing from data.url",
    ):
        load_config(PAPER, path, environ={})
