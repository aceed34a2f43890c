"""The embedding stage: file → vocal audio (`voiced.track_audio`) → L2-normalised embeddings, per 6-s window and per
track, for any model.

`Embedder` is what every command uses: a trained checkpoint, or a preset with pretrained weights by name (`voice`,
the default). `iter_track_embeddings` decodes in DataLoader workers and embeds batched in inference mode.
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

from .audio import WINDOW_SECONDS, AudioError, cut_windows, load_audio, window_starts
from .audio.prepare import Preprocess, prepare
from .cpu import ensure as ensure_cpu_policy
from .cpu import single_thread_worker
from .voiced import MAX_WINDOWS, track_audio

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int
    sample_rate: int
    window_seconds: float

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """[N, T] float32 at `sample_rate` → [N, dim] float32, L2-normalised."""

    def embed_track(self, voiced: np.ndarray) -> np.ndarray:
        """[T] voiced audio of a track → [dim] float32, L2-normalised: the track-level embedding used for scoring."""


DEFAULT_BACKEND = "voice"  # the best measured on the dev protocols (docs/results.md)


class ModelEmbedder:
    """Embeddings of a SingerModel: a preset with pretrained weights (`voice`) or a trained checkpoint, followed by
    the checkpoint's scoring backend when it has one. A track's voiced audio is prepared as the model's preset
    declares (`audio.prepare`) before its track embedding."""

    TRACK_CHUNK = 600 * 16000  # a longer voiced track is embedded in pieces of this many samples

    def __init__(self, model, name: str, backend=None, device: str = "cpu", batch_size: int = 32,
                 space: str | None = None, reads_mixtures: bool = False):
        self.model, self.name, self.backend = model.to(device).eval(), name, backend
        self.device, self.batch_size = device, batch_size
        self.space = space or f"preset:{name}"  # models sharing a space can query each other's catalogues
        self.reads_mixtures = reads_mixtures  # a distilled student: no separation in front of it
        self.dim = backend.dim if backend is not None else model.cfg.embed_dim
        self.sample_rate, self.window_seconds = model.sample_rate, WINDOW_SECONDS
        self.preprocess = Preprocess.from_dict(model.cfg.preprocess)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | None = None) -> "ModelEmbedder":
        from .models import load_model, resolve_checkpoint
        from .models.backend import ScoringBackend
        from .models.identity import embedding_space, reads_mixtures

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_model(path, device), f"checkpoint:{Path(path).name}",
                   ScoringBackend.load(resolve_checkpoint(path)), device, space=embedding_space(checkpoint=path),
                   reads_mixtures=reads_mixtures(path))

    def _finish(self, emb: np.ndarray) -> np.ndarray:
        return self.backend.apply(emb) if self.backend is not None else emb

    @torch.inference_mode()
    def encoder_windows(self, windows: np.ndarray) -> np.ndarray:
        """[N, T] → [N, D] the model's L2-normalised embeddings, before any scoring backend."""
        out = []
        for i in range(0, len(windows), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size])).to(self.device)
            out.append(self.model.embed(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.cfg.embed_dim), np.float32)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        return self._finish(self.encoder_windows(windows))

    @torch.inference_mode()
    def encoder_track(self, voiced: np.ndarray) -> np.ndarray:
        """[T] voiced audio → [D]: prepared as the preset declares, then partial-level encoders (GE2E) average every
        1.6-s partial of it, as Resemblyzer's embed_utterance does; others average their 6-s windows."""
        enc, prep = self.model.encoder, self.preprocess
        voiced = prepare(voiced, prep, self.sample_rate)
        if hasattr(enc, "partials"):
            x = torch.from_numpy(np.ascontiguousarray(voiced, np.float32)).to(self.device)
            gain = prep.target_dbfs is None  # a prepared level is read as it is
            parts = [enc.partials(x[i : i + self.TRACK_CHUNK][None], gain=gain)[0]
                     for i in range(0, len(x), self.TRACK_CHUNK) if i == 0 or len(x) - i >= 16000]  # a tail < 1 s: out
            v = torch.cat(parts).mean(dim=0).float().cpu().numpy()
        else:
            starts = window_starts(len(voiced) / self.sample_rate, self.window_seconds)
            v = self.encoder_windows(cut_windows(voiced, starts, self.window_seconds, self.sample_rate)).mean(axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def embed_track(self, voiced: np.ndarray) -> np.ndarray:
        return self._finish(self.encoder_track(voiced)[None])[0]


def load_embedder(backend: str | None = None, checkpoint: str | None = None, device: str = "cpu") -> ModelEmbedder:
    """A checkpoint when given, else a preset with pretrained weights by name (`voice`), else the project's default."""
    ensure_cpu_policy()
    if checkpoint:
        return ModelEmbedder.from_checkpoint(checkpoint, device)
    from .models import create_model, get_config, list_models

    name = backend or DEFAULT_BACKEND
    try:
        cfg = get_config(name)
    except KeyError:
        cfg = None
    if cfg is None or not cfg.pretrained:
        known = [m for m in list_models() if get_config(m).pretrained]
        raise ValueError(f"unknown backend {name!r}: a backend is a model preset with pretrained weights "
                         f"({', '.join(known)}); for a trained model pass --checkpoint")
    return ModelEmbedder(create_model(cfg), name, None, device)


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
    embeddings: np.ndarray  # [N, D] one per 6-s window
    error: str | None = None
    track: np.ndarray | None = None  # [D] the track-level embedding (all partials of the voiced audio)
    query_track: np.ndarray | None = None  # [D] with two views (`also_separated`): the raw reading alone, as queried


def two_view_track(raw: np.ndarray, separated: np.ndarray) -> np.ndarray:
    """A track read by a distilled student twice, raw and through a separator ([D] each, L2-normalised) → their
    L2-normalised mean: how such a student enrols a track (`ENROL_VIEWS`). Its queries stay raw."""
    v = np.asarray(raw, np.float32) + np.asarray(separated, np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


ENROL_VIEWS = ("auto", "mixture", "mixture+separated")  # auto: mixture+separated for a student, when a separator is there


def second_view_name(embedder: Embedder, views: str = "auto", separate: str = "auto") -> str | None:
    """The separator ("spleeter", "demucs") through which a distilled student's enrolment also reads each track
    (`two_view_track`), or None: one view (any other model, `views="mixture"`, or `auto` with `separate="none"` or
    without spleeter's weights). Enrolment runs offline, once per track; the queries stay raw, so identification
    keeps the mixture path's cost."""
    if views not in ENROL_VIEWS:
        raise ValueError(f"enrolment views must be one of {', '.join(ENROL_VIEWS)}, got {views!r}")
    if views == "mixture" or not getattr(embedder, "reads_mixtures", False) or (views, separate) == ("auto", "none"):
        return None
    from .weights import WeightsMissing, locate

    name = separate if separate in ("spleeter", "demucs") else "spleeter"
    if name == "spleeter":
        try:
            locate("spleeter")
        except WeightsMissing:
            if views == "auto":
                log.info("a student's enrolment reads the mixture only: spleeter weights not fetched")
                return None
            raise ValueError("enrolment views mixture+separated need spleeter's weights: run `singerid fetch-weights`")
    return name


def second_view(embedder: Embedder, views: str = "auto", separate: str = "auto", device: str = "cpu",
                cache_dir: str | os.PathLike | None = None):
    """`second_view_name`'s separator, loaded (None: one view)."""
    from .separation import load_separator

    name = second_view_name(embedder, views, separate)
    return load_separator(name, device, cache_dir) if name else None


def iter_track_embeddings(
    embedder: Embedder, paths: list[str], starts: list | None = None, workers: int = 2, progress: bool = True,
    separator=None, vocal_only: bool = True, budget: int | None = MAX_WINDOWS, vad="auto", also_separated=None,
) -> Iterator[TrackEmbedding]:
    """Embed the (vocal) windows of every file: decoding in workers, separation and the encoder in this process.
    Unreadable files come back with `error` set (they never abort the run). With `also_separated` (a separator), the
    track embedding is `two_view_track` of the file as read and of its separated vocal (the windows and `query_track`:
    as read)."""
    ensure_cpu_policy()
    starts = starts if starts is not None else [None] * len(paths)
    loader = DataLoader(_Decoded(list(paths), embedder.sample_rate), batch_size=None, num_workers=workers,
                        prefetch_factor=4 if workers else None, worker_init_fn=single_thread_worker if workers else None)
    for i, wave, err in tqdm(loader, total=len(paths), desc=f"embed {embedder.name}", disable=None if progress else True, unit="track"):
        if err:
            log.warning("skipped %s", err)
            yield TrackEmbedding(i, paths[i], [], np.zeros((0, embedder.dim), np.float32), err)
            continue
        audio = track_audio(np.asarray(wave), embedder.window_seconds, starts[i], separator, vocal_only,
                            embedder.sample_rate, budget, vad)
        track = query = embedder.embed_track(audio.voiced)
        if also_separated is not None:
            other = track_audio(np.asarray(wave), embedder.window_seconds, starts[i], also_separated, vocal_only,
                                embedder.sample_rate, budget, vad)
            track = two_view_track(query, embedder.embed_track(other.voiced))
        yield TrackEmbedding(i, paths[i], audio.starts, embedder.embed_windows(audio.windows), track=track,
                             query_track=query if also_separated is not None else None)


def embed_tracks(
    embedder: Embedder, tracks: pd.DataFrame, column: str = "path", workers: int = 2, progress: bool = True,
    separator=None,
) -> tuple[pd.DataFrame, list[str]]:
    """Tracks table → (one row per vocal window, no budget: path, singer, song, start, embedding [D]; errors)."""
    rows, errors = [], []
    segs = [v if isinstance(v, (list, tuple)) else None for v in tracks.get("vocal_segs", [None] * len(tracks))]
    paths = [p or q for p, q in zip(tracks[column], tracks["path"])]
    vad = "auto" if column == "path" else None  # another column names vocal stems: their windows by energy
    for te in iter_track_embeddings(embedder, paths, segs, workers, progress=progress, separator=separator, budget=None,
                                    vad=vad):
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
