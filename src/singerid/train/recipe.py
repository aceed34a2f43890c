"""What adapts a pretrained encoder to singing and to clones, beside the contrastive loop: which parameters train and
at which learning rate, the schedule, the augmentations and the instrumentals they remix onto, and the scoring backend
fitted on the training table once the model is trained (`scoring.fit_backend`, stored in the run's checkpoint)."""
from __future__ import annotations

import fnmatch
import logging
import math
from pathlib import Path

import pandas as pd
import torch

from ..data.manifest import load_tracks

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


def lr_scheduler(opt: torch.optim.Optimizer, cfg, total_steps: int, mode: str = "min"):
    """The run's learning-rate schedule (`cfg.lr_schedule`): `plateau` (the paper's) multiplies every group's rate by
    `cfg.plateau_factor` after `cfg.plateau_patience` epochs without a better validation score (`mode`: "min" for a
    loss, "max" for a score); `cosine` anneals each group's rate from its own value to 0 over `total_steps` steps.
    Step it with `scheduler_step`."""
    if cfg.lr_schedule == "cosine":
        total = max(1, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    if cfg.lr_schedule != "plateau":
        raise ValueError(f"unknown learning-rate schedule {cfg.lr_schedule!r} (plateau | cosine)")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg.plateau_factor,
                                                      patience=cfg.plateau_patience)


def scheduler_step(sched, val_score: float | None = None) -> None:
    """Call after every training step (no `val_score`) and at every epoch end (its validation score): the cosine
    schedule moves per step, the plateau schedule per epoch."""
    plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if plateau and val_score is not None:
        sched.step(val_score)
    elif not plateau and val_score is None:
        sched.step()


def audio_files(folder: Path) -> list[str]:
    """Every audio file under `folder` (by suffix, recursively), sorted."""
    return sorted(str(f) for f in folder.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)


def instrumental_table(spec: str | list[str] | tuple[str, ...] | None, tracks: pd.DataFrame) -> pd.DataFrame:
    """Instrumental rows (stem=instrumental) from `spec` — a tracks table (its instrumental rows, or every row when it
    marks none), a folder of audio files, or several of these (their rows together, each file once) — or, without
    `spec`, the training table's own."""
    if spec is None:
        return tracks[tracks["stem"] == "instrumental"]
    if isinstance(spec, (list, tuple)):
        rows = pd.concat([instrumental_table(s, tracks) for s in spec], ignore_index=True)
        return rows.drop_duplicates("path")
    p = Path(spec)
    if p.is_dir():
        files = audio_files(p)
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

    from ..scoring import decode_instrumentals

    waves = decode_instrumentals(instrumentals) if "remix" in cfg.augment else []
    return Augmenter(AugmentConfig(tuple(cfg.augment), cfg.augment_prob), waves)


def fit_run_backend(out: Path, tracks: pd.DataFrame, cfg) -> None:
    """Fit the scoring backend with the run's chosen checkpoint (on its table, remixed onto the run's instrumentals:
    separated again; a distilled student reads them raw and through its catalogues' second view) and store it in that
    checkpoint folder."""
    from ..embed import ModelEmbedder
    from ..models import load_model, resolve_checkpoint
    from ..models.identity import reads_mixtures
    from ..scoring import fit_backend, remix_separator

    folder = resolve_checkpoint(out)
    insts = instrumental_table(cfg.instrumentals, tracks)
    emb = ModelEmbedder(load_model(folder), f"checkpoint:{out.name}", reads_mixtures=reads_mixtures(folder))
    # a student: its remixes read raw and, as its catalogues enrol by default, through spleeter too
    sep = remix_separator(emb, "auto", "spleeter", cfg.device) if len(insts) else None
    backend = fit_backend(emb, tracks, cfg.scoring, cfg.clones, instrumentals=insts, separator=sep,
                          asnorm_k=cfg.asnorm_k)
    backend.save(folder)
    log.info("scoring backend (%s) stored in %s", cfg.scoring, folder)
