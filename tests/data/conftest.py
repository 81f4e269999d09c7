"""Fixtures for the data tests: the shared ML-100K copy and its canonical benchmark folds."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The unpacked ML-100K folder at ../shared/data/ml-100k (skips when absent)."""
    path = SHARED / "data" / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"ML-100K not found at {path}")
    return path


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    """The canonical rating folds at ../shared/bench/ml-100k (skips when absent)."""
    path = SHARED / "bench" / "ml-100k"
    if not (path / "u1.base").is_file():
        pytest.skip(f"benchmark folds not found at {path}")
    return path
