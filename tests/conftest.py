"""Shared fixtures: where the read-only benchmark data lives (../shared beside the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ml100k_raw(shared_dir: Path) -> Path:
    return shared_dir / "data" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_bench(shared_dir: Path) -> Path:
    return shared_dir / "bench" / "ml-100k"
