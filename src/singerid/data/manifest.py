"""The tracks table (GUIDE §5): CSV or Parquet with `path`, `singer` and optional metadata columns."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

REQUIRED = ("path", "singer")
OPTIONAL = ("song", "kind", "stem", "vocals_path", "accompaniment_path", "split", "genre", "vocal_segs")
STEMS = {"mixture", "vocals", "instrumental", "speech"}
SINGER_SEP = "|"  # a row sung (or cloned) by several singers, "A|B": a query is right if any of them is predicted
KINDS = ("real", "cloned")
MAX_SINGER = 200  # characters in a singer's name (tables and HTTP alike)
MAX_SONG = 255  # characters in a song cell (as a file name)
MAX_PATH = 4096  # characters in a path cell
MAX_TABLE_BYTES = 256 << 20  # a tracks table larger than this is refused before it is read
MAX_PROBLEMS = 5  # cell problems listed in one error


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
    """`vocal_segs` cell → start times (s): a JSON list "[0, 6.5]" or "0;6.5"; empty → None (no restriction).
    ValueError for anything else, and for times that are not finite and >= 0."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
        times = [float(x) for x in list(v)]
    elif not (s := str(v).strip()):
        return None
    elif s.startswith("["):
        try:
            items = json.loads(s)
        except ValueError:
            raise ValueError("not a JSON list of start times") from None
        if not isinstance(items, list):
            raise ValueError("not a list of start times")
        times = [float(x) for x in items]
    else:
        times = [float(x) for x in s.replace(",", ";").split(";") if x.strip()]
    if not all(math.isfinite(t) and t >= 0 for t in times):
        raise ValueError("start times must be finite and >= 0 s")
    return times


# ---- the rules a table cell and an HTTP form field both pass: each returns why a value is refused, or None
def singer_problem(singer: str) -> str | None:
    if not singer or len(singer) > MAX_SINGER:
        return f"singer must be 1-{MAX_SINGER} characters (has {len(singer)})"
    return None


def kind_problem(kind: str) -> str | None:
    return None if kind in KINDS else "kind must be 'real' or 'cloned' (a known imitation of the singer)"


def _song_problem(song: str) -> str | None:
    return f"song longer than {MAX_SONG} characters" if len(song) > MAX_SONG else None


def _path_problem(path: str) -> str | None:
    if not path:
        return "empty path"
    return f"path longer than {MAX_PATH} characters" if len(path) > MAX_PATH else None


def _segs_problem(v) -> str | None:
    try:
        parse_segs(v)
    except (ValueError, TypeError) as e:
        return f"vocal_segs: {e}" if "start times" in str(e) else "vocal_segs must be start times (s): \"[0, 6.5]\" or \"0;6.5\""
    return None


def _row_problems(df: pd.DataFrame) -> list[str]:
    """'row N, column C: why' for every bad cell (rows numbered from 1, the header not counted)."""
    checks = {"path": _path_problem, "singer": singer_problem, "song": _song_problem, "kind": kind_problem,
              "stem": lambda v: None if v in STEMS else f"unknown stem {v[:40]!r}; expected one of {sorted(STEMS)}",
              "vocal_segs": _segs_problem}
    out = []
    for i, row in enumerate(df.itertuples(index=False)):
        for col, check in checks.items():
            v = getattr(row, col, None)
            if col == "singer" and not v and row.stem == "instrumental":
                continue  # an instrumental may have no singer
            if col in ("path", "singer", "song", "kind", "stem") and not isinstance(v, str):
                continue
            if (why := check(v)) is not None:
                out.append(f"row {i + 1}, column {col!r}: {why}")
    return out


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"{path}: tracks table not found")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise ManifestError(f"{path}: tracks table larger than {MAX_TABLE_BYTES >> 20} MB; split it")
    try:
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        raise ManifestError(f"{path}: cannot read tracks table ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing required column(s) {missing}; have {list(df.columns)}")
    if df.empty:
        raise ManifestError(f"{path}: tracks table has no rows")
    return df.copy()


def load_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """Read, check and normalise a tracks table: absolute paths, string singers, defaults for optional columns.
    Every cell is checked with the rules of the HTTP service; ManifestError names each bad row and column.

    Defaults: song = the track's own path (every track its own song; a stem listed as a row of its own shares its
    mixture's song, see `song_keys`), kind = "real", stem = "mixture"."""
    path = Path(path)
    df = _read_table(path)
    base = path.parent.resolve()
    df["kind"] = [_text(k) or "real" for k in df.get("kind", pd.Series([""] * len(df)))]
    df["stem"] = [_text(s) or "mixture" for s in df.get("stem", pd.Series([""] * len(df)))]
    df["singer"] = [_text(s) for s in df["singer"]]
    df["path"] = [_text(p) for p in df["path"]]
    if "song" in df:
        df["song"] = [_text(s) for s in df["song"]]
    problems = _row_problems(df)
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise ManifestError(f"{path}: " + "; ".join(problems[:MAX_PROBLEMS]) + more)
    df["path"] = [_resolve(base, p) for p in df["path"]]
    for c in ("vocals_path", "accompaniment_path"):
        df[c] = [_resolve(base, p) for p in df.get(c, pd.Series([None] * len(df)))]
    df["song"] = song_keys(df)
    df["vocal_segs"] = [parse_segs(v) for v in df.get("vocal_segs", pd.Series([None] * len(df)))]
    for c in ("split", "genre", "source_singer"):
        if c not in df.columns:
            df[c] = ""
    return df.reset_index(drop=True)


def readable_rows(tracks: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[object, str]]]:
    """Split a table by `audio.check_file` on each row's path (a regular, readable file within the size limit,
    checked before any byte is read or hashed) → (the rows that pass, [(row label, reason)] for the others, each
    logged once)."""
    from ..audio import AudioError, check_file

    keep, refused = [], []
    for label, p in zip(tracks.index, tracks["path"]):
        try:
            check_file(p)
            keep.append(label)
        except AudioError as e:
            log.warning("skipped %s", e)
            refused.append((label, str(e)))
    return tracks.loc[keep], refused


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
