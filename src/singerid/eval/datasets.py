"""Loaders for the paper's FMA and MTG-Jamendo split files (authors' JSON schema, GUIDE §2) → a tracks table.

FMA   train: {artist: {"track": [{"file_id": "012345.mp3", "vocal_segs": [s, ...]}, ...]}}
      val/test: {artist: {"track": {"file_id": ..., "vocal_segs": [...]}}}     audio: fma_full/{id[:3]}/{id}
MTG   train: {artist: [{"file_id": "NN/1234.mp3", "vocal_segs": [...]}, ...]}
      val/test: {artist: {"file_id": ..., "vocal_segs": [...]}}                audio: mtg-jamendo-dataset/audio/{id}
`vocal_segs` are start times (s) of 6-s windows with vocals.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

FORMATS = ("fma", "mtg")


def _items(fmt: str, split: str, v) -> list[dict]:
    if fmt == "fma":
        t = v["track"] if isinstance(v, dict) and "track" in v else v
    else:
        t = v
    if isinstance(t, dict):
        return [t]
    if isinstance(t, list):
        return t
    raise ValueError(f"unexpected {fmt} {split} entry: {str(v)[:80]}")


def audio_path(fmt: str, root: str | os.PathLike, file_id: str) -> str:
    if fmt == "fma":
        return str(Path(root) / "fma_full" / file_id[:3] / file_id)
    return str(Path(root) / "mtg-jamendo-dataset" / "audio" / file_id)


def load_split_files(fmt: str, files: dict[str, str | os.PathLike], audio_root: str | os.PathLike) -> pd.DataFrame:
    """{"train": path, "val": path, "test": path} in the authors' schema → tracks table with split and vocal_segs."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    rows = []
    for split, path in files.items():
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object keyed by artist")
        for artist, v in data.items():
            for t in _items(fmt, split, v):
                rows.append({"path": audio_path(fmt, audio_root, t["file_id"]), "singer": str(artist),
                             "song": t["file_id"], "kind": "real", "stem": "mixture", "split": split,
                             "vocal_segs": json.dumps([float(s) for s in t.get("vocal_segs", [])]) or ""})
    return pd.DataFrame(rows)
