"""What adapts a pretrained encoder to singing and to clones, beside the contrastive loop: which parameters train and
at which learning rate, the augmentations and the instrumentals they remix onto, and the scoring backend fitted on the
training table once the model is trained (stored in the run's checkpoint)."""
from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..audio import AudioError, load_audio
from ..data.manifest import load_tracks, singers_of, vocal_source

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".m4a", ".opus")


def param_groups(model, cfg) -> list[dict]:
    """Freeze parameters matching `cfg.freeze` (fnmatch patterns); encoder.* parameters train at `cfg.encoder_lr`
    (when set), the rest (projector) at `cfg.lr`."""
    frozen, enc, rest = [], [], []
    for name, p in model.named_parameters():
        if any(fnmatch.fnmatch(name, pat) for pat in cfg.freeze):
            p.requires_grad_(False)
            frozen.append(name)
        else:
            (enc if name.startswith("encoder.") and cfg.encoder_lr is not None else rest).append(p)
    if frozen:
        log.info("frozen: %d parameter tensors (%s)", len(frozen), ", ".join(cfg.freeze))
    groups = [{"params": rest}]
    if enc:
        groups.append({"params": enc, "lr": cfg.encoder_lr})
    return [g for g in groups if g["params"]]


def instrumental_table(spec: str | None, tracks: pd.DataFrame) -> pd.DataFrame:
    """Instrumental rows (stem=instrumental) from `spec` — a tracks table (its instrumental rows, or every row when it
    marks none) or a folder of audio files — or, without `spec`, the training table's own."""
    if spec is None:
        return tracks[tracks["stem"] == "instrumental"]
    p = Path(spec)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ValueError(f"{p}: no audio files for instrumentals")
        rows = pd.DataFrame({c: [""] * len(files) for c in tracks.columns})
        rows["path"], rows["song"], rows["kind"], rows["stem"] = files, files, "real", "instrumental"
        rows["vocal_segs"] = None
        return rows
    t = load_tracks(p)
    marked = t[t["stem"] == "instrumental"]
    return marked if len(marked) else t.assign(stem="instrumental")


def make_augmenter(cfg, instrumentals: pd.DataFrame):
    """The training views' augmenter (None without augmentations); remix draws from the decoded instrumentals."""
    if not cfg.augment:
        return None
    from ..augment import AugmentConfig, Augmenter

    waves = []
    if "remix" in cfg.augment:
        for path in instrumentals["path"]:
            try:
                waves.append(load_audio(path))
            except AudioError as e:
                log.warning("instrumental skipped: %s", e)
    return Augmenter(AugmentConfig(tuple(cfg.augment), cfg.augment_prob), waves)


def backend_rows(tracks: pd.DataFrame, clones: bool) -> pd.DataFrame:
    """The singing rows a scoring backend is fitted on: real tracks (their vocal stem when given), and with `clones`
    the clones labelled with the singer they imitate; rows naming several singers are left out."""
    kinds = ["real", "cloned"] if clones else ["real"]
    rows = tracks[tracks["kind"].isin(kinds) & tracks["stem"].isin(["vocals", "mixture"])]
    rows = rows[rows["singer"].map(lambda s: len(singers_of(s)) == 1)]
    return rows.assign(path=[vocal_source(r) or r["path"] for _, r in rows.iterrows()], stem="vocals")


def fit_backend(embedder, tracks: pd.DataFrame, kind: str = "wccn", clones: bool = True, workers: int = 2,
                progress: bool = True):
    """Embed the table's singing rows (windows and track embeddings, before any backend) → a fitted ScoringBackend."""
    from ..eval.cache import embed_files
    from ..models.backend import BackendConfig, ScoringBackend

    rows = backend_rows(tracks, clones)
    plain = type(embedder)(embedder.model, embedder.name, None, embedder.device)  # no backend on top
    wins = embed_files(plain, list(rows["path"]), None, workers=workers, progress=progress)
    x, y = [], []
    for w, singer in zip(wins, rows["singer"]):
        if w.error is None and len(w.emb):
            x += [w.emb, w.track[None]] if w.track is not None else [w.emb]
            y += [singer] * (len(w.emb) + (w.track is not None))
    log.info("fitting a %s backend on %d embeddings of %d singers", kind, len(y), len(set(y)))
    return ScoringBackend.fit(np.concatenate(x), np.array(y), BackendConfig(kind=kind))


def fit_run_backend(out: Path, tracks: pd.DataFrame, kind: str, clones: bool) -> None:
    """Fit the scoring backend with the run's chosen checkpoint and store it in that checkpoint folder."""
    from ..embed import ModelEmbedder
    from ..models import load_model, resolve_checkpoint

    folder = resolve_checkpoint(out)
    backend = fit_backend(ModelEmbedder(load_model(folder), f"checkpoint:{out.name}"), tracks, kind, clones)
    backend.save(folder)
    log.info("scoring backend (%s) stored in %s", kind, folder)
