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


def tiny_world(tmp_path_factory, name: str, songs_per_singer: int, seed: int) -> dict:
    """3 synthetic singers' vocal stems (7 s songs) and an untrained `tiny` checkpoint: {"root", "t", "ckpt"}."""
    from singerid.models import create_model, save_model
    from singerid.testing import vocal_stems_table

    root = tmp_path_factory.mktemp(name)
    t = vocal_stems_table(root / "data", n_singers=3, songs_per_singer=songs_per_singer, seconds=7.0, seed=seed)
    t.to_csv(root / "all.csv", index=False)
    return {"root": root, "t": t, "ckpt": str(save_model(root / "ck", create_model("tiny", seed=0)))}
