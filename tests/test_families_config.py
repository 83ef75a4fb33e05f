"""config/examples/: the study with Qwen2.5 and Llama-3 by config alone (issue 21). Each example
validates, pins every hub model, and is sized by the plan as its comments say for profiles/slurm's
nodes (8 GPUs of 80 GB); the architectures come from sekd.plan.sizing.KNOWN_ARCHS."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sekd.plan import allocation, sizing
from sekd.plan.config import load_config, unpinned_warnings, validate_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "examples"
PROFILE = ROOT / "profiles" / "slurm" / "config.v8+.yaml"


def _config(name: str, finetune: str = "full") -> dict:
    config = load_config(
        ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml", EXAMPLES / name
    )
    config["training"]["finetune"] = finetune
    return validate_config(config, environ={})


def _cluster() -> allocation.Cluster:
    resources = yaml.safe_load(PROFILE.read_text())["default-resources"]
    return allocation.Cluster.from_resources(
        {k: v for k, v in resources.items() if not k.startswith("?")}
    )


def _gpus(config: dict, rule: str, **wildcards) -> int:
    return allocation.plan_request(config, _cluster(), rule, SimpleNamespace(**wildcards)).gpus


def _kd(config: dict) -> int:
    variant = "forward_kd-lam0.5" + (
        "-finetune.lora" if config["training"]["finetune"] == "lora" else ""
    )
    return _gpus(config, "kd", teacher="teacher", variant=variant, model="student")


@pytest.mark.parametrize("name", ["qwen2.5.yaml", "llama3.yaml"])
def test_each_example_pins_every_model_and_shares_the_students_tokenizer(name):
    config = _config(name)
    assert not [w for w in unpinned_warnings(config) if w.startswith("models.")]
    assert config["tokenizer"]["from_model"] == "student"
    for model in config["models"].values():
        assert model["pretrained"] in sizing.KNOWN_ARCHS and len(model["revision"]) == 40


def test_qwen_example_is_sized_as_its_comments_say():
    full, lora = _config("qwen2.5.yaml"), _config("qwen2.5.yaml", "lora")
    sft = {m: _gpus(full, "sft", model=m) for m in ("student", "teacher", "teacher_l")}
    assert sft == {"student": 1, "teacher": 4, "teacher_l": 8} and _kd(full) == 1
    assert {m: _gpus(lora, "sft", model=m) for m in sft} == dict.fromkeys(sft, 1)
    assert _kd(lora) == 1


def test_llama_example_is_sized_as_its_comments_say():
    full, lora = _config("llama3.yaml"), _config("llama3.yaml", "lora")
    assert _gpus(full, "sft", model="student") == 1 and _kd(full) == 1
    assert _gpus(full, "sft", model="teacher") == 4
    with pytest.raises(sizing.SizingError, match=r"rule sft, model teacher_l: .*host memory"):
        _gpus(full, "sft", model="teacher_l")
    assert _gpus(lora, "sft", model="teacher_l") == 4
