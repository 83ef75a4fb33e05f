"""config/README.md is generated from the schema and must be up to date."""

from __future__ import annotations

from pathlib import Path

from conftest import load_tool

from sekd.plan.config import load_schema

config_docs = load_tool("config_docs")

ROOT = Path(__file__).resolve().parents[1]


def test_config_readme_is_generated_from_the_schema():
    assert (ROOT / "config" / "README.md").read_text(encoding="utf-8") == config_docs.render(), (
        "config/README.md is out of date: run `make config-docs`"
    )


def test_every_schema_key_is_documented_with_a_default():
    schema = load_schema()
    documented = {key: (kind, default, what) for key, kind, default, what in
                  config_docs.rows(schema, schema)}  # fmt: skip
    assert "training.learning_rate" in documented
    assert "models.<name>.init.hidden_size" in documented
    for key, (_, default, what) in documented.items():
        assert what, f"{key} has no description"
        assert default != "(required)" or key.startswith("models.<name>.init."), key
