"""Defaults once (issue 19): each default is written in one place. The schema file declares the
config's defaults and choices; the code's constants are read from it (sekd.plan.schema), and the
run options' keys take their values and default from their declaration (RUN_OPTIONS)."""

from __future__ import annotations

import ast
from pathlib import Path

from sekd.data import prompts
from sekd.plan import schema
from sekd.plan.config import load_schema
from sekd.plan.objectives import RUN_OPTIONS

ROOT = Path(__file__).resolve().parents[1]


def test_code_constants_are_the_schemas():
    from sekd.train import sft_checkpoint

    declared = {
        (prompts.TRUNCATIONS, prompts.DEFAULT_TRUNCATION): "training.truncation",
        (sft_checkpoint.SELECTIONS, sft_checkpoint.DEFAULT): "training.sft_selection",
    }
    for (values, default), key in declared.items():
        assert (values, default) == (schema.choices(key), schema.default(key))
    assert schema.default("prompt.response_newline") is prompts.RESPONSE_NEWLINE


def test_run_option_keys_take_values_and_default_from_their_declaration():
    loaded = load_schema()
    for option in RUN_OPTIONS.values():
        node, written = loaded, schema.raw()
        for part in option.key.split("."):
            node, written = node["properties"][part], written["properties"][part]
        if "properties" in node:  # student_init.kd / .fdistill
            assert {c["default"] for c in node["properties"].values()} == {option.default}
            assert all("default" not in c for c in written["properties"].values())
        else:
            assert (node["enum"], node["default"]) == (list(option.values), option.default)
            assert "enum" not in written and "default" not in written


def _default_literals(tree: ast.AST) -> list[tuple[int, str, object]]:
    """(line, name, value) of every literal given as a default: a parameter's default, a class
    field's value, and the fallback of ``.get(name, fallback)``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            pairs = [
                *zip(args.args[::-1], args.defaults[::-1], strict=False),
                *zip(args.kwonlyargs, args.kw_defaults, strict=True),
            ]
            found += [(d.lineno, a.arg, d.value) for a, d in pairs if isinstance(d, ast.Constant)]
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Constant):
                    found.append((item.lineno, ast.unparse(item.target), item.value.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) for a in node.args)
        ):
            found.append((node.lineno, node.args[0].value, node.args[1].value))
    return found


def test_the_finder_sees_each_way_of_writing_a_default():
    tree = ast.parse(
        "def f(truncation='target_tail', *, b=1): pass\n"
        "class C:\n    response_newline: bool = True\n"
        "x = job.get('sft_selection', 'valid_loss')\n"
    )
    assert sorted(_default_literals(tree)) == [
        (1, "b", 1),
        (1, "truncation", "target_tail"),
        (3, "response_newline", True),
        (4, "sft_selection", "valid_loss"),
    ]


def _schema_defaults() -> dict[str, list[tuple[str, object]]]:
    """{leaf name: [(dotted key, default)]} of every scalar default of the loaded schema."""
    leaves: dict[str, list[tuple[str, object]]] = {}

    def walk(node: dict, path: str) -> None:
        for name, entry in node.get("properties", {}).items():
            key = f"{path}.{name}" if path else name
            if entry.get("default") is not None and not isinstance(entry["default"], dict | list):
                leaves.setdefault(name, []).append((key, entry["default"]))
            walk(entry, key)

    walk(load_schema(), "")
    return leaves


# Parameters that share a name and a value with a config key but are not that key's default.
NOT_THE_KEY = {
    ("validation_fit.py", "batch_size"),  # the fit batches by training.per_device_batch_size
    ("study.py", "in_all"),  # sensitivity_outputs(in_all=): rule all's question, not the key
    ("allocation.py", "num_beams"),  # a sampled generation (no num_beams) is one sequence
    ("teacher_store.py", "seed"),  # a store's sampling seed (teacher_store.*), not pretrain.seed
    ("store_fidelity.py", "seed"),  # likewise
}


def test_no_module_writes_the_literal_of_a_config_default():
    """A parameter or field named like a config key defaults to the schema's value by reading it
    (`sekd.plan.schema.default`, RUN_OPTIONS), never by writing it again."""
    leaves = _schema_defaults()
    assert {"max_new_tokens", "tokenize", "truncation", "response_newline"} <= set(leaves)
    found = [
        f"{path.relative_to(ROOT)}:{line} {name}={value!r} ({key})"
        for path in sorted((ROOT / "workflow").rglob("*.py"))
        for line, name, value in _default_literals(ast.parse(path.read_text(encoding="utf-8")))
        for key, written in leaves.get(name, [])
        if (path.name, name) not in NOT_THE_KEY
        and type(value) is type(written)
        and value == written
    ]
    assert found == []
