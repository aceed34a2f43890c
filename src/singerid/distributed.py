"""Catalogue-scale embedding across machines with Ray Data: the tracks table is split into blocks, each block is
decoded / separated / embedded by a pool of actors (one model per actor), and the window rows are written as Parquet
shards. The same `track_audio` + embedder stage as the local path, so results are identical.

    ray start --head            # or an existing cluster: RAY_ADDRESS=...
    singerid embed --ray --checkpoint run --manifest tracks.csv --out shards/
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class _EmbedBatch:
    """Ray actor: a batch of table rows → one row per window (path, singer, song, start, embedding, error)."""

    def __init__(self, backend: str | None, checkpoint: str | None, separate: str, device: str = "cpu"):
        from .embed import load_embedder

        self.embedder = load_embedder(backend, checkpoint, device)
        self.separator = None
        if separate != "none":
            from .separation import load_separator
            from .weights import home

            self.separator = load_separator(separate, device, home() / "separated")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from .audio import AudioError
        from .voiced import file_audio

        rows = []
        for _, r in batch.iterrows():
            segs = r.get("vocal_segs")
            try:
                sep = None if r.get("stem") == "vocals" else self.separator
                audio = file_audio(r["path"], self.embedder.sample_rate, self.embedder.window_seconds,
                                   list(segs) if isinstance(segs, (list, tuple, np.ndarray)) and len(segs) else None, sep,
                                   vad=None if r.get("stem") == "vocals" else "auto")
            except AudioError as e:
                zero = np.zeros(self.embedder.dim, np.float32)
                rows.append({"path": r["path"], "singer": r["singer"], "song": r["song"], "start": -1.0,
                             "embedding": zero, "track": zero, "error": str(e)})
                continue
            track = self.embedder.embed_track(audio.voiced).astype(np.float32)
            for s, e in zip(audio.starts, self.embedder.embed_windows(audio.windows)):
                rows.append({"path": r["path"], "singer": r["singer"], "song": r["song"], "start": float(s),
                             "embedding": e.astype(np.float32), "track": track, "error": ""})
        return pd.DataFrame(rows, columns=["path", "singer", "song", "start", "embedding", "track", "error"])


def ray_embed(tracks: pd.DataFrame, out_dir: str | os.PathLike, backend: str | None = None,
              checkpoint: str | None = None, separate: str = "none", actors: int = 2, batch_size: int = 16,
              device: str = "cpu") -> Path:
    """Embed a tracks table on the Ray cluster (`ray.init()` joins RAY_ADDRESS or starts a local one) → Parquet
    shards under out_dir (rows as in `singerid embed`, plus an `error` column)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("install ray (pip install 'ray[data]') for --ray") from e
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    # leave a CPU free for Ray Data's own read / repartition tasks, or the actor pool can starve them (deadlock)
    actors = max(1, min(actors, int(ray.cluster_resources().get("CPU", 2)) - 1))
    cols = [c for c in ("path", "singer", "song", "stem", "vocal_segs") if c in tracks]
    ds = ray.data.from_pandas(tracks[cols].reset_index(drop=True))
    ds = ds.repartition(max(actors, min(len(tracks), 4 * actors)))  # enough blocks to keep every actor busy
    ds = ds.map_batches(_EmbedBatch, fn_constructor_args=(backend, checkpoint, separate, device), batch_format="pandas",
                        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
    out = Path(out_dir)
    ds.write_parquet(str(out))
    return out


def read_shards(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Parquet shards from `ray_embed` → one DataFrame (embedding as float32 arrays)."""
    frames = [pd.read_parquet(f) for f in sorted(Path(out_dir).glob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        for col in ("embedding", "track"):
            if col in df:
                df[col] = [np.asarray(e, np.float32) for e in df[col]]
    return df
