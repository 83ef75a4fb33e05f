"""Shared fixtures: the read-only ALMA data mirror next to the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

ALMA_MIRROR = Path(__file__).resolve().parents[1].parent / "shared/data/alma"


@pytest.fixture(scope="session")
def alma_mirror() -> Path:
    """Mirror root (holds ``SHA256SUMS`` and ``human_written_data/``); skip if absent."""
    if not (ALMA_MIRROR / "human_written_data").is_dir():
        pytest.skip(f"ALMA data mirror not found at {ALMA_MIRROR}")
    return ALMA_MIRROR


@pytest.fixture(scope="session")
def alma_data(alma_mirror: Path) -> Path:
    """The mirror's ``human_written_data/`` root."""
    return alma_mirror / "human_written_data"
