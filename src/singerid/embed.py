"""The embedding stage: file → 6-s windows → L2-normalised embeddings, for any backend.

`Embedder` is what every command uses (train's checkpoints, the pretrained `voice` baseline, ...). `embed_tracks`
decodes in DataLoader workers, embeds batched in inference mode, and yields one row per window.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import WINDOW_SECONDS, AudioError, cut_windows, load_audio, peak_normalise, window_starts
from .cpu import single_thread_worker
from .vad import vocal_windows, window_activity

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int
    sample_rate: int
    window_seconds: float

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """[N, T] float32 at `sample_rate` → [N, dim] float32, L2-normalised."""


class CheckpointEmbedder:
    """A trained singerid checkpoint (run folder, checkpoint folder or .safetensors)."""

    def __init__(self, path: str | os.PathLike, device: str | None = None, batch_size: int = 32):
        from .models import load_model

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_model(path, self.device)
        self.name = f"checkpoint:{Path(path).name}"
        self.dim = self.model.cfg.embed_dim
        self.sample_rate = self.model.sample_rate
        self.window_seconds = WINDOW_SECONDS
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(windows), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size])).to(self.device)
            out.append(self.model.embed(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


MAX_WINDOWS = 10  # window budget per track: at most this many 6-s windows, spread over it (60 s of voice)


def spread(starts: list[float], budget: int | None) -> list[float]:
    """At most `budget` of `starts`, evenly spread over them (all of them when they fit)."""
    if budget is None or len(starts) <= budget:
        return list(starts)
    return [starts[int(i)] for i in np.unique(np.linspace(0, len(starts) - 1, budget).round().astype(int))]


def separated_vocal_windows(wave: np.ndarray, separator, seconds: float = WINDOW_SECONDS,
                            budget: int | None = MAX_WINDOWS, sample_rate: int = 16000) -> tuple[list[float], np.ndarray]:
    """Mixture [T] → (starts, vocal-stem windows [N, seconds * sr]) of up to `budget` windows with vocals.

    A track with more candidate windows than the budget is not separated whole: windows spread over it are separated
    alone (with context), judged by vocal energy, and further spread windows are separated in rounds until half the
    budget has vocals or twice the budget was separated. Short tracks are separated whole."""
    candidates = window_starts(len(wave) / sample_rate, seconds)
    if budget is None or len(candidates) <= budget:
        vocals = separator.separate(wave)["vocals"]
        starts = spread(vocal_windows(vocals, wave, seconds), budget)
        return starts, cut_windows(vocals, starts, seconds, sample_rate)
    peak = float(np.abs(wave).max())
    remaining, tried, kept = list(candidates), [], []  # kept: (start, vocals window)
    ratios: list[tuple[float, float, np.ndarray]] = []
    while remaining and len(kept) < (budget + 1) // 2 and len(tried) < 2 * budget:
        pick = spread(remaining, min(budget - len(kept), 2 * budget - len(tried)))
        voc = separator.separate_windows(wave, pick, seconds)
        flags, ratio = window_activity(voc, cut_windows(wave, pick, seconds, sample_rate), peak)
        kept += [(s, v) for s, v, f in zip(pick, voc, flags) if f]
        ratios += list(zip(ratio, pick, voc))
        tried += pick
        remaining = [s for s in remaining if s not in set(pick)]
    if not kept:  # at least the most vocal window, so every track yields one
        _, s, v = max(ratios, key=lambda r: r[0])
        kept = [(s, v)]
    kept.sort(key=lambda sv: sv[0])
    return [s for s, _ in kept], np.stack([v for _, v in kept])


def wave_windows(
    wave: np.ndarray, seconds: float = WINDOW_SECONDS, starts: list[float] | None = None, separator=None,
    vocal_only: bool = True, sample_rate: int = 16000, budget: int | None = MAX_WINDOWS,
) -> tuple[list[float], np.ndarray]:
    """16 kHz wave → (window starts s, [N, seconds * sample_rate] peak-normalised windows), N ≤ `budget` (None: all).

    With a separator the windows come from the separated vocal stem (only the windows used are separated). Unless
    `starts` are given (e.g. the table's `vocal_segs`), only windows with vocal activity are kept (at least one)."""
    duration = len(wave) / sample_rate
    if starts:  # chosen by the table (vocal_segs): all of them, no budget
        starts = [s for s in starts if s < duration] or [0.0]
        windows = (separator.separate_windows(wave, starts, seconds) if separator is not None
                   else cut_windows(wave, starts, seconds, sample_rate))
    elif separator is not None:
        starts, windows = separated_vocal_windows(wave, separator, seconds, budget, sample_rate)
    else:
        starts = spread(vocal_windows(wave, None, seconds) if vocal_only else window_starts(duration, seconds), budget)
        windows = cut_windows(wave, starts, seconds, sample_rate)
    return starts, peak_normalise(windows)


def track_windows(path: str, sample_rate: int = 16000, seconds: float = WINDOW_SECONDS, starts: list[float] | None = None,
                  separator=None, vocal_only: bool = True, budget: int | None = MAX_WINDOWS) -> tuple[list[float], np.ndarray]:
    """Decode a file → `wave_windows` of it."""
    return wave_windows(load_audio(path, sample_rate), seconds, starts, separator, vocal_only, sample_rate, budget)


class _Decoded(Dataset):
    """Decoding in DataLoader workers: index → (index, wave or None, error or None)."""

    def __init__(self, paths: list[str], sample_rate: int):
        self.paths, self.sr = paths, sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, load_audio(self.paths[i], self.sr), None
        except AudioError as e:
            return i, None, str(e)


@dataclass
class TrackEmbedding:
    index: int  # row of the input list
    path: str
    starts: list[float]
    embeddings: np.ndarray  # [N, D]
    error: str | None = None


def iter_track_embeddings(
    embedder: Embedder, paths: list[str], starts: list | None = None, workers: int = 2, progress: bool = True,
    separator=None, vocal_only: bool = True, budget: int | None = MAX_WINDOWS,
) -> Iterator[TrackEmbedding]:
    """Embed the (vocal) windows of every file: decoding in workers, separation and the encoder in this process.
    Unreadable files come back with `error` set (they never abort the run)."""
    starts = starts if starts is not None else [None] * len(paths)
    loader = DataLoader(_Decoded(list(paths), embedder.sample_rate), batch_size=None, num_workers=workers,
                        prefetch_factor=4 if workers else None, worker_init_fn=single_thread_worker if workers else None)
    for i, wave, err in tqdm(loader, total=len(paths), desc=f"embed {embedder.name}", disable=None if progress else True, unit="track"):
        if err:
            log.warning("skipped %s", err)
            yield TrackEmbedding(i, paths[i], [], np.zeros((0, embedder.dim), np.float32), err)
            continue
        st, windows = wave_windows(np.asarray(wave), embedder.window_seconds, starts[i], separator, vocal_only,
                                   embedder.sample_rate, budget)
        yield TrackEmbedding(i, paths[i], list(st), embedder.embed_windows(windows))


def embed_tracks(
    embedder: Embedder, tracks: pd.DataFrame, column: str = "path", workers: int = 2, progress: bool = True,
    separator=None,
) -> tuple[pd.DataFrame, list[str]]:
    """Tracks table → (one row per vocal window, no budget: path, singer, song, start, embedding [D]; errors)."""
    rows, errors = [], []
    segs = [v if isinstance(v, (list, tuple)) else None for v in tracks.get("vocal_segs", [None] * len(tracks))]
    paths = [p or q for p, q in zip(tracks[column], tracks["path"])]
    for te in iter_track_embeddings(embedder, paths, segs, workers, progress=progress, separator=separator, budget=None):
        if te.error:
            errors.append(te.error)
            continue
        r = tracks.iloc[te.index]
        for s, e in zip(te.starts, te.embeddings):
            rows.append({"path": r["path"], "singer": r["singer"], "song": r.get("song", r["path"]), "start": s, "embedding": e})
    return pd.DataFrame(rows, columns=["path", "singer", "song", "start", "embedding"]), errors


def write_embeddings(df: pd.DataFrame, out: str | os.PathLike, meta: dict | None = None) -> Path:
    """Window rows → Parquet (embedding as a fixed-size float32 list column), written atomically."""
    out = Path(out)
    dim = len(df["embedding"].iloc[0]) if len(df) else 0
    flat = pa.array(np.concatenate(list(df["embedding"])).astype(np.float32) if len(df) else np.zeros(0, np.float32))
    table = pa.table({
        "path": pa.array(df["path"].astype(str)), "singer": pa.array(df["singer"].astype(str)),
        "song": pa.array(df["song"].astype(str)), "start": pa.array(df["start"].astype(float)),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.float32())),
    })
    table = table.replace_schema_metadata({b"singerid": str(meta or {}).encode()})
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return out


def read_embeddings(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """Parquet from `write_embeddings` → (metadata rows, [N, D] float32)."""
    t = pq.read_table(path)
    emb = np.asarray(t.column("embedding").combine_chunks().flatten(), np.float32).reshape(t.num_rows, -1)
    return t.drop(["embedding"]).to_pandas(), emb
