"""Per-singer splits (paper §3.3): one test track, one validation track (4 fixed windows), ≥ 3 training tracks.

Seeded and saved as JSON beside the results so an experiment can be repeated exactly. A table whose `split` column
already says train/val/test (e.g. the FMA / MTG-Jamendo releases) is used as given.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class SingerSplit:
    test: str
    val: str
    train: list[str]
    val_windows: list[int] = field(default_factory=list)  # indices into the validation track's windows


def make_splits(tracks: pd.DataFrame, seed: int = 0, min_train: int = 3) -> dict[str, SingerSplit]:
    """Singer → split over `kind=real` singing tracks; singers with too few tracks are left out (logged)."""
    rows = tracks[(tracks["kind"] == "real") & tracks["stem"].isin(["mixture", "vocals"])]
    given = rows["split"].isin(["train", "val", "test"]).all() and rows["split"].eq("test").any()
    rng = np.random.default_rng(seed)
    out, dropped = {}, 0
    for singer, g in sorted(rows.groupby("singer"), key=lambda kv: kv[0]):
        paths = list(g["path"])
        if given:
            by = {k: list(g["path"][g["split"] == k]) for k in ("train", "val", "test")}
            if by["test"] and by["val"] and len(by["train"]) >= min_train:
                out[singer] = SingerSplit(by["test"][0], by["val"][0], by["train"])
            else:
                dropped += 1
            continue
        if len(paths) < min_train + 2:
            dropped += 1
            continue
        order = rng.permutation(len(paths))
        out[singer] = SingerSplit(paths[order[0]], paths[order[1]], [paths[i] for i in sorted(order[2:])])
    if dropped:
        log.info("%d singer(s) left out: fewer than %d training tracks + test + validation", dropped, min_train)
    return out


def fix_val_windows(splits: dict[str, SingerSplit], n_windows: dict[str, int], seed: int, k: int = 4) -> None:
    """Choose k validation windows per validation track once, at the start of an experiment."""
    rng = np.random.default_rng([seed, 4])
    for s in splits.values():
        n = n_windows.get(s.val, 0)
        s.val_windows = sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False)) if n else []


def save_splits(path: str | os.PathLike, splits: dict[str, SingerSplit], meta: dict | None = None) -> None:
    Path(path).write_text(json.dumps({"meta": meta or {}, "singers": {k: asdict(v) for k, v in splits.items()}}, indent=1))


def load_splits(path: str | os.PathLike) -> dict[str, SingerSplit]:
    return {k: SingerSplit(**v) for k, v in json.loads(Path(path).read_text())["singers"].items()}
