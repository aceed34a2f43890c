"""Embedding cache: every window of every file is embedded once per (model, front end) and reused across heads,
runs and commands. One small .npz per file, keyed by the file's path, size and mtime, under a folder per model."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..embed import Embedder, iter_track_embeddings, two_view_track
from ..voiced import resolve_vad

log = logging.getLogger(__name__)


@dataclass
class Windows:
    starts: np.ndarray  # [N] seconds
    emb: np.ndarray  # [N, D] float32, L2-normalised
    error: str | None = None
    norm: np.ndarray | None = None  # [N] L2 norms of the raw encoder outputs, for models whose head reads them raw
    track: np.ndarray | None = None  # [D] the track-level embedding (all partials of the voiced audio)

    def features(self, raw: bool = False) -> np.ndarray:
        """[N, D]: the L2-normalised embeddings, or (`raw`, where the norms are known) the raw encoder outputs."""
        return self.emb * self.norm[:, None] if raw and self.norm is not None else self.emb


def with_second_view(w: Windows, other: Windows) -> Windows:
    """A file's windows as read, its track embedding averaged with `other`'s (the same file read through a
    separator: `embed.two_view_track`); as read where either has no track embedding."""
    if w.track is None or other.track is None:
        return w
    return Windows(w.starts, w.emb, w.error, w.norm, two_view_track(w.track, other.track))


def as_tracks(windows: list[Windows]) -> list[Windows]:
    """Each file's track-level embedding as its only "window" (files without one are left as they are)."""
    return [Windows(np.zeros(1, np.float32), w.track[None], w.error) if w.track is not None else w for w in windows]


def reads_raw(embedder: Embedder) -> bool:
    """Does this embedder's model feed its classifier head the raw encoder output (the reference code's `paper`)?"""
    cfg = getattr(getattr(embedder, "model", None), "cfg", None)
    return getattr(cfg, "head_input", "l2") == "raw"


class _RawOutputs:
    """A checkpoint embedder that returns the raw encoder outputs (the cache normalises them and keeps the norms)."""

    def __init__(self, embedder: Embedder):
        self.model, self.embedder = embedder.model, embedder
        self.name, self.dim = embedder.name, embedder.dim
        self.sample_rate, self.window_seconds = embedder.sample_rate, embedder.window_seconds

    def embed_track(self, voiced: np.ndarray) -> np.ndarray:
        return self.embedder.embed_track(voiced)

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """[N, T] → [N, D] raw encoder outputs."""
        device = next(self.model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(windows))
        out = [self.model.encode(b.to(device)).float().cpu() for b in x.split(32)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def model_key(embedder: Embedder) -> str:
    """Identifies the weights as well as the model (a retrained checkpoint never reuses stale embeddings). A checkpoint
    is its configuration and weights, not its folder's name: a run linked, copied or renamed keeps its cache."""
    model = getattr(embedder, "model", None)
    name, cfg = embedder.name, getattr(model, "cfg", None)
    if name.startswith("checkpoint:") and hasattr(cfg, "to_dict"):
        name = "checkpoint:" + hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    parts = [name, str(embedder.dim), str(embedder.window_seconds), "vocal-windows-v5"]
    if getattr(cfg, "preprocess", None):
        parts.append(json.dumps(cfg.preprocess, sort_keys=True))
    if reads_raw(embedder):
        parts.append("raw-norms")
    if model is not None:
        h = hashlib.sha1()
        for t in model.state_dict().values():  # every weight: a fine-tune may leave the first layers frozen
            h.update(t.detach().cpu().numpy().tobytes())
        backend = getattr(embedder, "backend", None)
        if backend is not None:
            h.update(backend.mean.tobytes() + backend.transform.tobytes())
        parts.append(h.hexdigest()[:12])
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def window_key(vad) -> str:
    """Cache-folder suffix naming the vocal-activity model that chose the windows ("" for energy)."""
    return f"-vad{vad.ident}" if vad is not None else ""


def _file_key(path: str, extra: str) -> str:
    st = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{extra}".encode()).hexdigest()


def embed_files(
    embedder: Embedder, paths: list[str], cache_dir: str | os.PathLike | None = None, starts: list | None = None,
    workers: int = 2, progress: bool = True, separator=None, vad="auto",
) -> list[Windows]:
    """→ one Windows per path (error set for unreadable files), from the cache where possible. The cache folder is
    per (model, separation backend, vocal-activity model choosing the windows: `voiced.resolve_vad`; None for
    stems). For models whose head reads raw outputs, the raw norms are kept too."""
    starts = starts if starts is not None else [None] * len(paths)
    sep = separator.name if separator is not None else "none"
    vad = resolve_vad(vad, separator)
    folder = Path(cache_dir) / f"{model_key(embedder)}-{sep}{window_key(vad)}" if cache_dir else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    out: list[Windows | None] = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        f = _cache_file(folder, p, starts[i])
        if f is not None and f.is_file():
            z = np.load(f)
            out[i] = Windows(z["starts"], z["emb"], norm=z["norm"] if "norm" in z else None,
                             track=z["track"] if "track" in z else None)
        else:
            todo.append(i)
    if todo:
        log.info("embedding %d of %d files with %s", len(todo), len(paths), embedder.name)
    raw = reads_raw(embedder)
    for te in iter_track_embeddings(_RawOutputs(embedder) if raw else embedder, [paths[i] for i in todo], [starts[i] for i in todo], workers,
                                    progress=progress, separator=separator, vad=vad):
        i = todo[te.index]
        emb, norm = te.embeddings.astype(np.float32), None
        if raw:
            norm = np.linalg.norm(emb, axis=1).astype(np.float32)
            emb = emb / np.maximum(norm[:, None], 1e-12)
        out[i] = Windows(np.asarray(te.starts, np.float32), emb, te.error, norm, te.track)
        f = _cache_file(folder, paths[i], starts[i])
        if f is not None and te.error is None:
            tmp = f.with_name(f.name + ".tmp.npz")
            extra = ({"norm": norm} if raw else {}) | ({"track": te.track} if te.track is not None else {})
            np.savez(tmp, starts=out[i].starts, emb=out[i].emb, **extra)
            os.replace(tmp, f)
    return out  # type: ignore[return-value]


def _cache_file(folder: Path | None, path: str, starts) -> Path | None:
    if folder is None or not os.path.exists(path):
        return None
    return folder / f"{_file_key(path, repr(starts))}.npz"
