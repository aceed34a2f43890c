"""Embedding cache: every window of every file is embedded once per (model, front end) and reused across heads,
runs and commands. One small .npz per file, keyed by the file's path, size and mtime, under a folder per model."""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embed import Embedder, iter_track_embeddings

log = logging.getLogger(__name__)


@dataclass
class Windows:
    starts: np.ndarray  # [N] seconds
    emb: np.ndarray  # [N, D] float32, L2-normalised
    error: str | None = None


def model_key(embedder: Embedder) -> str:
    """Identifies the weights as well as the name (a retrained checkpoint never reuses stale embeddings)."""
    parts = [embedder.name, str(embedder.dim), str(embedder.window_seconds), "vocal-windows-v1"]
    model = getattr(embedder, "model", None)
    if model is not None:
        h = hashlib.sha1()
        for t in list(model.state_dict().values())[:8]:
            h.update(t.detach().cpu().numpy().tobytes()[:4096])
        parts.append(h.hexdigest()[:12])
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _file_key(path: str, extra: str) -> str:
    st = os.stat(path)
    return hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{extra}".encode()).hexdigest()


def embed_files(
    embedder: Embedder, paths: list[str], cache_dir: str | os.PathLike | None = None, starts: list | None = None,
    workers: int = 2, progress: bool = True, separator=None,
) -> list[Windows]:
    """→ one Windows per path (error set for unreadable files), from the cache where possible. The cache folder is
    per (model, separation backend)."""
    starts = starts if starts is not None else [None] * len(paths)
    sep = separator.name if separator is not None else "none"
    folder = Path(cache_dir) / f"{model_key(embedder)}-{sep}" if cache_dir else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    out: list[Windows | None] = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        f = _cache_file(folder, p, starts[i])
        if f is not None and f.is_file():
            z = np.load(f)
            out[i] = Windows(z["starts"], z["emb"])
        else:
            todo.append(i)
    if todo:
        log.info("embedding %d of %d files with %s", len(todo), len(paths), embedder.name)
    for te in iter_track_embeddings(embedder, [paths[i] for i in todo], [starts[i] for i in todo], workers,
                                    progress=progress, separator=separator):
        i = todo[te.index]
        out[i] = Windows(np.asarray(te.starts, np.float32), te.embeddings.astype(np.float32), te.error)
        f = _cache_file(folder, paths[i], starts[i])
        if f is not None and te.error is None:
            tmp = f.with_name(f.name + ".tmp.npz")
            np.savez(tmp, starts=out[i].starts, emb=out[i].emb)
            os.replace(tmp, f)
    return out  # type: ignore[return-value]


def _cache_file(folder: Path | None, path: str, starts) -> Path | None:
    if folder is None or not os.path.exists(path):
        return None
    return folder / f"{_file_key(path, repr(starts))}.npz"
