from __future__ import annotations

import os
from pathlib import Path

import pytest

import singerid  # noqa: F401  (before torch: the CPU policy's short OpenMP spin)
from singerid import cpu

cpu.configure()  # torch threads for this process from the CPU policy, as every entry point does

DEV_DATA = Path(os.environ.get("SINGERID_DEV_DATA", Path(__file__).resolve().parents[2] / "shared/data/singing-dev"))


@pytest.fixture(scope="session")
def synth_catalogue(tmp_path_factory) -> Path:
    """6 synthetic singers × 4 songs, 7 s each, with vocal/accompaniment stems; returns tracks.csv."""
    from singerid.testing import make_catalogue

    return make_catalogue(tmp_path_factory.mktemp("synth"), n_singers=6, songs_per_singer=4, seconds=7.0, seed=1)


@pytest.fixture
def dev_data() -> Path:
    if not (DEV_DATA / "tracks.csv").is_file():
        pytest.skip(f"dev data not found at {DEV_DATA}")
    return DEV_DATA
