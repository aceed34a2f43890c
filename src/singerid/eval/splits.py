"""Per-singer splits (paper §3.3): one test track, one validation track (4 fixed windows), ≥ 3 training tracks.

Whole songs are held out: every take of a singer's test song (GTSinger techniques, NUS read/sing pairs, a mixture and
its own stem listed as two rows) is kept out of training and validation, and likewise for the validation song, so a
singer needs `min_train` + 2 distinct songs (`song`, falling back to the path). `test` / `val` name the evaluated take
of each held-out song; `test_tracks` / `val_tracks` list all its takes.

Seeded and saved as JSON beside the results so an experiment can be repeated exactly. A table whose `split` column
already says train/val/test (e.g. the FMA / MTG-Jamendo releases) is used as given, less any training take of the
test or validation song.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.manifest import singers_of, song_keys

log = logging.getLogger(__name__)


@dataclass
class SingerSplit:
    test: str
    val: str
    train: list[str]
    val_windows: list[int] = field(default_factory=list)  # indices into the validation track's windows
    test_tracks: list[str] = field(default_factory=list)  # every take of the test song, `test` first ([]: just test)
    val_tracks: list[str] = field(default_factory=list)  # every take of the validation song, `val` first


def _songs(g: pd.DataFrame) -> dict[str, list[str]]:
    """song → its takes (paths), in table order."""
    out: dict[str, list[str]] = {}
    for p, song in zip(g["path"], g["song"]):
        if p not in out.get(song, []):
            out.setdefault(song, []).append(p)
    return out


def _drawn(songs: dict[str, list[str]], rng: np.random.Generator, min_train: int) -> SingerSplit | None:
    if len(songs) < min_train + 2:
        return None
    names = list(songs)
    order = rng.permutation(len(names))
    test, val = songs[names[order[0]]], songs[names[order[1]]]
    train = [p for i in sorted(order[2:]) for p in songs[names[i]]]
    return SingerSplit(test[0], val[0], train, test_tracks=test, val_tracks=val)


def _given(g: pd.DataFrame, min_train: int) -> SingerSplit | None:
    part = dict(zip(g["path"], g["split"]))
    song = dict(zip(g["path"], g["song"]))
    songs = _songs(g)
    tests = [p for p in g["path"] if part[p] == "test"]
    vals = [p for p in g["path"] if part[p] == "val" and tests and song[p] != song[tests[0]]]
    if not tests or not vals:
        return None
    held = {song[tests[0]], song[vals[0]]}
    train = [p for p in g["path"] if part[p] == "train" and song[p] not in held]
    leaked = sum(part[p] == "train" and song[p] in held for p in g["path"])
    if leaked:
        log.warning("%s: %d training take(s) of the test / validation song held out", g["singer"].iloc[0], leaked)
    if len({song[p] for p in train}) < min_train:
        return None
    order = lambda first: [first] + [p for p in songs[song[first]] if p != first]
    return SingerSplit(tests[0], vals[0], train, test_tracks=order(tests[0]), val_tracks=order(vals[0]))


def make_splits(tracks: pd.DataFrame, seed: int = 0, min_train: int = 3) -> dict[str, SingerSplit]:
    """Singer → song-level split over `kind=real` singing tracks; singers with fewer than `min_train` + 2 distinct
    songs (or rows naming several singers) are left out (logged)."""
    tracks = tracks.assign(song=song_keys(tracks))
    rows = tracks[(tracks["kind"] == "real") & tracks["stem"].isin(["mixture", "vocals"])]
    several = rows["singer"].map(lambda s: len(singers_of(s)) > 1)
    if several.any():
        log.info("%d real row(s) naming several singers left out of the splits", int(several.sum()))
        rows = rows[~several]
    given = rows["split"].isin(["train", "val", "test"]).all() and rows["split"].eq("test").any()
    rng = np.random.default_rng(seed)
    out, dropped = {}, 0
    for singer, g in sorted(rows.groupby("singer"), key=lambda kv: kv[0]):
        split = _given(g, min_train) if given else _drawn(_songs(g), rng, min_train)
        if split is None:
            dropped += 1
        else:
            out[singer] = split
    if dropped:
        log.info("%d singer(s) left out: fewer than %d distinct songs (%d training + test + validation)", dropped,
                 min_train + 2, min_train)
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
