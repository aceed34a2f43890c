"""The README's main job on its embedded default: synthesise a small catalogue of singers, train the `tiny` Vocal model
briefly, embed every track and report how well same-singer tracks are told apart from different-singer tracks."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from .data.manifest import load_tracks
from .embed import CheckpointEmbedder, embed_tracks
from .testing import make_catalogue
from .train.loop import TrainConfig, train

log = logging.getLogger(__name__)


def same_vs_different(emb: np.ndarray, singers: list[str], songs: list[str]) -> tuple[float, float]:
    """Mean cosine of window pairs from the same singer (different songs) and from different singers."""
    sim = emb @ emb.T
    s, g = np.asarray(singers), np.asarray(songs)
    same = (s[:, None] == s[None]) & (g[:, None] != g[None])
    diff = s[:, None] != s[None]
    return float(sim[same].mean()), float(sim[diff].mean())


def nearest_neighbour_accuracy(emb: np.ndarray, singers: list[str], songs: list[str]) -> float:
    """Fraction of windows whose most similar window from *another song* has the same singer."""
    sim = emb @ emb.T
    g = np.asarray(songs)
    sim[g[:, None] == g[None]] = -np.inf
    s = np.asarray(singers)
    return float(np.mean(s[sim.argmax(axis=1)] == s))


def run(workdir: str | None = None, singers: int = 8, steps: int = 120, seed: int = 0) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="singerid-quickstart-"))
    table = make_catalogue(root / "catalogue", n_singers=singers, songs_per_singer=4, seconds=7.0, seed=seed)
    cfg = TrainConfig(manifest=str(table), out=str(root / "run"), mode="vocal", model="tiny", max_steps=steps,
                      batch_pairs=singers, epoch_steps=40, val_steps=2, num_workers=1, seed=seed)
    tracks = load_tracks(table)
    before = _margin(None, cfg, tracks)
    run_dir = train(cfg)
    log.info("trained %d steps in %s", steps, run_dir)
    after = _margin(run_dir, cfg, tracks)
    return {"workdir": str(root), "checkpoint": str(run_dir), "before": before, "after": after}


def _margin(run_dir: Path | None, cfg: TrainConfig, tracks) -> dict:
    """Per input (vocal stems, mixtures): same/different-singer cosine and nearest-neighbour singer accuracy
    (untrained model when run_dir is None)."""
    if run_dir is None:
        from .models import create_model, save_model

        run_dir = save_model(Path(cfg.out).with_name("untrained"), create_model(cfg.model, seed=cfg.seed))
    embedder = CheckpointEmbedder(run_dir, "cpu")
    out = {}
    for name, column in (("vocals", "vocals_path"), ("mixtures", "path")):
        df, _ = embed_tracks(embedder, tracks, column, progress=False)
        e, singers, songs = np.stack(df["embedding"]), list(df["singer"]), list(df["song"])
        same, diff = same_vs_different(e, singers, songs)
        out[name] = {"same_singer": same, "different_singer": diff, "margin": same - diff,
                     "nn_accuracy": nearest_neighbour_accuracy(e, singers, songs)}
    return out
