"""The tracks table (GUIDE §5): CSV or Parquet with `path`, `singer` and optional metadata columns."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

REQUIRED = ("path", "singer")
OPTIONAL = ("song", "kind", "stem", "vocals_path", "accompaniment_path", "split", "genre", "vocal_segs")
STEMS = {"mixture", "vocals", "instrumental", "speech"}
SINGER_SEP = "|"  # a row sung (or cloned) by several singers, "A|B": a query is right if any of them is predicted


class ManifestError(ValueError):
    """A tracks table that cannot be used: the message says which file and what is wrong."""


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).strip()


def _resolve(base: Path, p) -> str:
    """Absolute path string; "" for a missing value."""
    if p is None or (isinstance(p, float) and pd.isna(p)) or str(p).strip() == "":
        return ""
    p = Path(str(p)).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def parse_segs(v) -> list[float] | None:
    """`vocal_segs` cell → start times (s): a JSON list "[0, 6.5]" or "0;6.5"; empty → None (no restriction)."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, (list, tuple)):
        return [float(x) for x in v]
    s = str(v).strip()
    if not s:
        return None
    if s.startswith("["):
        return [float(x) for x in json.loads(s)]
    return [float(x) for x in s.replace(",", ";").split(";") if x.strip()]


def load_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """Read and normalise a tracks table: absolute paths, string singers, defaults for optional columns.

    Defaults: song = the track's own path (every track its own song; a stem listed as a row of its own shares its
    mixture's song, see `song_keys`), kind = "real", stem = "mixture"."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: tracks table not found")
    try:
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        raise ManifestError(f"{path}: cannot read tracks table ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing required column(s) {missing}; have {list(df.columns)}")
    if df.empty:
        raise ManifestError(f"{path}: tracks table has no rows")
    base = path.parent.resolve()
    df = df.copy()
    df["path"] = [_resolve(base, p) for p in df["path"]]
    if (df["path"] == "").any():
        raise ManifestError(f"{path}: {int((df['path'] == '').sum())} row(s) with an empty path")
    df["kind"] = [k or "real" for k in df.get("kind", pd.Series([""] * len(df))).fillna("")]
    df["stem"] = [s or "mixture" for s in df.get("stem", pd.Series([""] * len(df))).fillna("")]
    bad = set(df["stem"]) - STEMS
    if bad:
        raise ManifestError(f"{path}: unknown stem value(s) {sorted(bad)}; expected {sorted(STEMS)}")
    df["singer"] = df["singer"].fillna("").astype(str).str.strip()
    nameless = (df["singer"] == "") & (df["stem"] != "instrumental")  # instrumentals may have no singer
    if nameless.any():
        raise ManifestError(f"{path}: {int(nameless.sum())} row(s) with an empty singer (first: {df['path'][nameless].iloc[0]})")
    for c in ("vocals_path", "accompaniment_path"):
        df[c] = [_resolve(base, p) for p in df.get(c, pd.Series([None] * len(df)))]
    df["song"] = song_keys(df)
    df["vocal_segs"] = [parse_segs(v) for v in df.get("vocal_segs", pd.Series([None] * len(df)))]
    for c in ("split", "genre", "source_singer"):
        if c not in df.columns:
            df[c] = ""
    return df.reset_index(drop=True)


def song_keys(tracks: pd.DataFrame) -> list[str]:
    """Per row, the song it is a take of: its `song` cell, else its path, except that a row whose file is another
    row's `vocals_path` / `accompaniment_path` (a stem listed as a row of its own) takes that row's song."""
    paths = list(tracks["path"])
    given = [_text(v) for v in tracks["song"]] if "song" in tracks else [""] * len(paths)
    own = {p: g or p for p, g in zip(paths, given)}
    parent: dict[str, str] = {}
    for c in ("vocals_path", "accompaniment_path"):
        for p, stem in zip(paths, tracks[c] if c in tracks else []):
            if _text(stem) and _text(stem) != p:
                parent.setdefault(_text(stem), own[p])
    return [g or parent.get(p, p) for p, g in zip(paths, given)]


def singers_of(label: str) -> list[str]:
    """"A|B" → ["A", "B"]; "A" → ["A"]."""
    return [s.strip() for s in str(label).split(SINGER_SEP) if s.strip()]


def vocal_source(row) -> str | None:
    """The file holding this track's vocals: its given stem, or the track itself when it is a vocal stem."""
    if row["vocals_path"]:
        return row["vocals_path"]
    return row["path"] if row["stem"] == "vocals" else None


def mixture_source(row) -> str | None:
    return row["path"] if row["stem"] == "mixture" else None
