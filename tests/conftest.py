"""Shared fixtures: the real development data (skipped when absent) and CPU-friendly torch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DL_TRACK = SHARED_DATA / "dl_track_longitudinal"
TIMTRACK_OBSERVERS = SHARED_DATA / "timtrack_observers"


@pytest.fixture(scope="session")
def dl_track_dir() -> Path:
    """The real DL_Track longitudinal images; tests using it skip when ../shared/data is not beside the repo."""
    if not (DL_TRACK / "aponeurosis" / "images").is_dir():
        pytest.skip(f"real data not found at {DL_TRACK} (it lives in ../shared/data beside the repository)")
    return DL_TRACK


@pytest.fixture(scope="session")
def timtrack_observers() -> Path:
    """The three observers' table of the TimTrack images; tests using it skip when ../shared/data is absent."""
    table = TIMTRACK_OBSERVERS / "observers.csv"
    if not table.is_file():
        pytest.skip(
            f"observers' table not found at {table} (it lives in ../shared/data beside the repository)"
        )
    return table


@pytest.fixture(scope="session", autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
