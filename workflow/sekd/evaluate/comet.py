"""COMET (Rei et al., 2022) with Unbabel/wmt22-comet-da, reported x100 as in the paper (§4.3).

`unbabel-comet` (and with it PyTorch Lightning) is imported only when a model is loaded: it is
slow to import, optional outside the comet environment, and reconfigures logging on import.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from sekd.plan.schema import default

DEFAULT_MODEL = "Unbabel/wmt22-comet-da"
CHECKPOINT = Path("checkpoints") / "model.ckpt"


def _import_comet() -> Any:
    """`import comet`, undoing the `logging.basicConfig(level=INFO)` it runs at import time."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import comet  # optional and slow (see the module's docstring): imported on use
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"unbabel-comet is not installed in {sys.executable}: COMET has an env of its own "
            "(workflow/envs/comet.yaml, requirements/comet.txt; it needs transformers<5, numpy<2). "
            "Run with `--sdm conda` or `--sdm conda apptainer` (docs/environments.md), or set "
            "scoring.comet_model: null to leave COMET out"
        ) from err

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    if not hasattr(comet, "load_from_checkpoint"):  # e.g. workflow/scripts/comet.py on sys.path
        raise ImportError(f"`import comet` found {comet.__file__}, not unbabel-comet")
    return comet


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_path(name: str) -> bool:
    """A hub id is `owner/name`; anything else that is not on disk is a missing local path."""
    return (
        name.endswith(".ckpt")
        or os.path.isabs(name)
        or name.startswith(("~", "."))
        or name.count("/") != 1
        or "\\" in name
    )


def resolve_checkpoint(name_or_path: str | Path) -> Path | None:
    """The local `.ckpt` for `name_or_path`, or None when it names a hub model.

    Accepts a `.ckpt` file (COMET reads `hparams.yaml` from the folder above `checkpoints/`)
    or a model directory holding `checkpoints/model.ckpt`. Raises FileNotFoundError, naming
    the path, for a local path that does not exist or a directory without a checkpoint.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        ckpt = path / CHECKPOINT
        if not ckpt.is_file():
            raise FileNotFoundError(f"COMET model directory {path} has no {CHECKPOINT}")
        return ckpt
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        raise FileNotFoundError(f"COMET checkpoint not found: {path}")
    return None


def _download(comet: Any, name: str, revision: str | None, offline: bool) -> Path:
    """The hub model's checkpoint: at `revision` (a commit hash or tag) when given, through
    huggingface_hub (comet.download_model takes no revision), else comet's own download."""
    if revision is None:
        return Path(comet.download_model(name, local_files_only=offline))
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download(repo_id=name, revision=revision, local_files_only=offline)
    return Path(snapshot) / CHECKPOINT


def load_model(name_or_path: str | Path, revision: str | None = None) -> Any:
    """Load a COMET model from a hub id (e.g. Unbabel/wmt22-comet-da) or a local checkpoint.

    Hub models are fetched at `revision` (config `scoring.comet_revision`; None = the hub's
    default) with `comet.download_model` / huggingface_hub (from the local cache only when
    HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set). The returned model carries its name in
    `sekd_name`, which `score` reports with the revision asked for (`sekd_revision`) and the
    hub commit of the cached snapshot it loaded (`sekd_commit`, None for a local checkpoint).
    """
    ckpt = resolve_checkpoint(name_or_path)
    if ckpt is not None and revision is not None:
        raise ValueError(
            f"scoring.comet_revision: {revision!r} pins a hub model, but {name_or_path} is local"
        )
    comet = _import_comet()
    offline = _offline()
    if ckpt is None:
        try:
            ckpt = _download(comet, str(name_or_path), revision, offline)
        except Exception as err:  # comet turns every failure into KeyError("not supported")
            where = "in the local Hugging Face cache (offline)" if offline else "on the hub"
            at = f" at revision {revision!r}" if revision else ""
            raise RuntimeError(
                f"COMET model {name_or_path!r} is neither a local path nor available{at} "
                f"{where}: {err}"
            ) from err
    model = comet.load_from_checkpoint(str(ckpt), local_files_only=offline)
    model.sekd_name = str(name_or_path)
    model.sekd_revision = revision
    model.sekd_commit = _snapshot_commit(ckpt)
    return model


def _snapshot_commit(ckpt: Path) -> str | None:
    """The hub commit of a checkpoint in the Hugging Face cache (.../snapshots/<commit>/
    checkpoints/model.ckpt), else None."""
    parents = Path(ckpt).parents
    if len(parents) > 2 and parents[2].name == "snapshots":
        return parents[1].name
    return None


def score(
    model: Any,
    sources: list[str],
    hypotheses: list[str],
    references: list[str],
    batch_size: int = default("scoring.comet_batch_size"),
    gpus: int | None = None,
    progress_bar: bool = True,
) -> dict:
    """COMET of one system on one test set.

    Returns {"comet": system score x100, "segments": segment scores x100 in input order
    (their mean is "comet"), "model": name, "model_revision" (asked for) and "model_commit"
    (loaded, when from the hub cache), "n_sentences": n}. `gpus` defaults to 1 when
    CUDA is available, else 0 (CPU). Raises ValueError if the three lists differ in length
    or are empty.
    """
    n = len(hypotheses)
    if not (len(sources) == n == len(references)):
        raise ValueError(
            f"{len(sources)} sources, {n} hypotheses and {len(references)} references: "
            "COMET needs one of each per segment"
        )
    if n == 0:
        raise ValueError("nothing to score: no segments")
    if gpus is None:
        gpus = 1 if torch.cuda.is_available() else 0
    samples = [
        {"src": s, "mt": h, "ref": r}
        for s, h, r in zip(sources, hypotheses, references, strict=True)
    ]
    output = model.predict(samples, batch_size=batch_size, gpus=gpus, progress_bar=progress_bar)
    segments = [100.0 * float(x) for x in output.scores]
    system = 100.0 * float(output.system_score)
    if len(segments) != n or not all(map(math.isfinite, [*segments, system])):
        raise RuntimeError(f"COMET returned {len(segments)} scores for {n} segments: {segments}")
    return {
        "comet": system,
        "segments": segments,
        "model": getattr(model, "sekd_name", type(model).__name__),
        "model_revision": getattr(model, "sekd_revision", None),
        "model_commit": getattr(model, "sekd_commit", None),
        "n_sentences": n,
    }
