"""Shared fixtures: the read-only ALMA data mirror next to the repository, and tiny models."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
# This working tree's sekd first, whatever an installed one points at (as scripts do: sekd_path).
sys.path.insert(0, str(ROOT / "workflow"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT / "workflow"), os.environ.get("PYTHONPATH")) if p
)  # and in the processes tests start


def load_tool(name: str) -> ModuleType:
    """The build tool tools/<name>.py as a module (tools/ is a folder of scripts, not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


ALMA_MIRROR = Path(os.environ.get("SEKD_DATA_MIRROR") or ROOT.parent / "shared/data/alma")

SENTENCES = [
    ("Das Haus ist klein.", "The house is small."),
    ("Ich trinke gern Kaffee.", "I like to drink coffee."),
    ("Der Hund schläft im Garten.", "The dog is sleeping in the garden."),
    ("Wir fahren morgen nach Berlin.", "We are going to Berlin tomorrow."),
    ("Das Wetter ist heute schön.", "The weather is nice today."),
    ("Sie liest ein langes Buch.", "She is reading a long book."),
]
LANGUAGES = {"en": "English", "de": "German", "cs": "Czech"}

# The `training` config section of the tiny runs in test_train, test_resume and test_deepspeed;
# each test overrides what it varies.
TINY_TRAINING = {
    "epochs": 2,
    "batch_size": 4,
    "per_device_batch_size": 2,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.1,
    "lr_scheduler": "cosine",
    "weight_decay": 0.0,
    "max_length": 128,
    "eval_steps": None,
    "logging_steps": 1,
    "select_best_sft": True,
    "save_steps": None,
    "deepspeed": None,
    "nproc_per_node": None,
}


# profiles/slurm runs every job in its rule's conda env (software-deployment-method: conda), so
# even a dry run under it asks conda three questions. conda and its channels are out of reach on
# the test machines: this stand-in answers exactly those (version, info, channel priority) and
# refuses anything else, so a plan that tried to build or run an env would fail loudly. A dry run
# builds no env; the env files themselves are checked against the locks (tests/test_envs.py).
PLANNING_CONDA = """#!/bin/sh
case "$1" in
  --version) echo "conda 25.1.1";;
  info) echo '{"conda_version": "25.1.1", "root_prefix": "%(root)s", "conda_prefix": "%(root)s",
    "envs_dirs": ["%(root)s/envs"], "platform": "linux-64", "active_prefix": null}';;
  config) echo '{"get": {"channel_priority": "strict"}, "rc_path": "/dev/null",
    "success": true, "warnings": []}';;
  *) echo "planning stand-in for conda: refuses '$*' (tests/conftest.py)" >&2; exit 1;;
esac
"""


@pytest.fixture(scope="session")
def planning_env(tmp_path_factory) -> dict:
    """os.environ with the planning stand-in for conda first on PATH (PLANNING_CONDA)."""
    root = tmp_path_factory.mktemp("planning-conda")
    script = root / "bin" / "conda"
    script.parent.mkdir()
    script.write_text(PLANNING_CONDA % {"root": root})
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def alma_mirror() -> Path:
    """Mirror root (holds ``SHA256SUMS`` and ``human_written_data/``); skip if absent."""
    if not (ALMA_MIRROR / "human_written_data").is_dir():
        pytest.skip(f"ALMA data mirror not found at {ALMA_MIRROR} (set SEKD_DATA_MIRROR)")
    return ALMA_MIRROR


@pytest.fixture(scope="session")
def alma_data(alma_mirror: Path) -> Path:
    """The mirror's ``human_written_data/`` root."""
    return alma_mirror / "human_written_data"


@pytest.fixture(scope="session")
def tiny_records() -> list[dict]:
    """A few German-English training records in both directions."""
    from sekd.data.alma import build_train_examples

    return build_train_examples({"de-en": SENTENCES})


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_records, tmp_path_factory):
    """A byte-level BPE trained on the tiny records, saved and reloaded as the workflow does."""
    from sekd.data import prompts
    from sekd.data import tokenizer as tokenizers

    texts = [
        prompts.build_prompt(r["source"], r["direction"], LANGUAGES) + r["target"]
        for r in tiny_records
    ]
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizers.train_bpe(texts * 4, vocab_size=400, min_frequency=1).save_pretrained(path)
    return tokenizers.load(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    """A seeded tiny Llama saved as safetensors."""
    from sekd import models

    init = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    path = tmp_path_factory.mktemp("base")
    models.save(models.build_tiny_llama(init, tiny_tokenizer, seed=0), tiny_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    """A seeded tiny Llama teacher of its own architecture (wider and deeper than
    `tiny_model_dir`: a teacher engine gets its own sizes), saved as safetensors."""
    from sekd import models

    init = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2}
    path = tmp_path_factory.mktemp("teacher")
    models.save(
        models.build_tiny_llama({**init, "num_attention_heads": 4}, tiny_tokenizer, seed=3),
        tiny_tokenizer,
        path,
    )
    return path


def tiny_job(
    out: Path,
    base: Path,
    train_file: Path,
    *,
    variant="sft",
    teacher: Path | None = None,
    valid_file: Path | None = None,
    tokenizer_dir: Path | None = None,
    training: dict | None = None,
    **fields,
):
    """A TrainJob on tiny models: the tokenizer next to the base weights unless given (models.save
    writes it there), checkpoints beside `out`, TINY_TRAINING with `training` overrides, seed 1.
    `variant`: "sft", or a KD run's sekd.plan.variants.Variant (its values: the job's plan)."""
    from sekd.train import job as train

    return train.TrainJob(
        variant="sft" if variant == "sft" else variant.name,
        plan=None if variant == "sft" else variant,
        base_model=str(base),
        tokenizer_dir=str(tokenizer_dir or base),
        train_files=[str(train_file)],
        valid_files=[str(valid_file)] if valid_file else [],
        teacher_model=str(teacher) if teacher else None,
        out_dir=str(out),
        checkpoint_dir=str(out) + "-checkpoints",
        languages=LANGUAGES,
        training={**TINY_TRAINING, **(training or {})},
        **{"seed": 1, **fields},
    )


def write_bytes(path: Path, content: bytes | str) -> Path:
    """Write `content` (str as UTF-8) to `path` byte for byte; return the path."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def parallel_files(root: Path, src: bytes | str, tgt: bytes | str) -> tuple[Path, Path]:
    """An aligned pair of training files train.de / train.en holding `src` and `tgt`."""
    return write_bytes(root / "train.de", src), write_bytes(root / "train.en", tgt)


def json_file(root: Path, content: bytes | str) -> Path:
    """An evaluation file test.de-en.json holding `content`."""
    return write_bytes(root / "test.de-en.json", content)


class SmallFilesystems:
    """tmpfs mounts of a few KiB or MiB made by a test, to run out of space on (issue 23)."""

    def __init__(self, root: Path):
        self.root = root
        self.mounted: list[Path] = []

    def mount(self, name: str, size: str) -> Path:
        """A fresh tmpfs of `size` ("700k", "4m") at <tmp>/<name>; skips the test when this
        machine does not let it mount one (not root, or no CAP_SYS_ADMIN in a container)."""
        import subprocess

        path = self.root / name
        path.mkdir()
        argv = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as error:
            pytest.skip(f"cannot mount a {size} tmpfs to fill up: {error}")
        if done.returncode:
            pytest.skip(
                f"cannot mount a {size} tmpfs to fill up (needs root with CAP_SYS_ADMIN): "
                f"{done.stderr.strip()}"
            )
        self.mounted.append(path)
        return path

    def resize(self, path: Path, size: str) -> None:
        """Give the tmpfs at `path` `size` (freeing space without touching its files)."""
        import subprocess

        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    def unmount(self) -> None:
        import subprocess

        for path in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)  # lazy: files may be open
        self.mounted = []


@pytest.fixture
def small_fs(tmp_path):
    """`SmallFilesystems` under tmp_path, unmounted after the test."""
    filesystems = SmallFilesystems(tmp_path)
    try:
        yield filesystems
    finally:
        filesystems.unmount()


def fake_mirror(root: Path, relpaths) -> Path:
    """A data mirror at `root` with an empty file at each path below human_written_data/ (what a
    plan-time check of the mirror looks for; nothing reads them)."""
    for relpath in relpaths:
        path = root / "human_written_data" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return root


def stop_at(monkeypatch, step: int) -> None:
    """Make a training run's CheckpointCallback see a SIGUSR1 at the end of optimizer step
    `step`: it checkpoints there and the run raises PreemptedError (a rerun resumes)."""
    import signal

    from sekd.train import checkpoints

    on_step_end = checkpoints.CheckpointCallback.on_step_end

    def signalled_at(self, args, state, control, **kwargs):
        if state.global_step == step:
            self.signalled = signal.SIGUSR1
        return on_step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(checkpoints.CheckpointCallback, "on_step_end", signalled_at)
