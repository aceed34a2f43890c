"""What adapts a pretrained encoder to singing and to clones, beside the contrastive loop: which parameters train and
at which learning rate, the augmentations and the instrumentals they remix onto, and the scoring backend fitted on the
training table once the model is trained (stored in the run's checkpoint)."""
from __future__ import annotations

import fnmatch
import logging
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

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


class WeightAverage:
    """Exponential moving average of a model's floating-point weights (Polyak averaging; `--ema DECAY`): after each
    optimiser step, avg ← decay·avg + (1 − decay)·live. With a constant learning rate the live weights wander around a
    basin; their average sits nearer its centre, at no extra training cost (for distilled students on the dev folds:
    closer to the teacher, no P3 gain; docs/results.md). A run with one validates and saves the averaged weights
    (`with avg.applied(model): ...`); its resumable checkpoints also keep the live ones (`live_weights.safetensors`)
    so that training continues from where it was."""

    LIVE = "live_weights.safetensors"

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema: the decay must lie in (0, 1), e.g. 0.99, got {decay}")
        self.decay = decay
        state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.avg = {k: v.detach().clone() for k, v in state.items()}
        self._pairs = (list(self.avg.values()), [v.detach() for v in state.values()])  # live: the model's storage

    @torch.no_grad()
    def update(self) -> None:
        """After an optimiser step (the live weights change in place, so the model is not passed again)."""
        torch._foreach_lerp_(*self._pairs, 1.0 - self.decay)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The averaged weights in `model` for the block (validation, saving), the live ones back after it."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.avg}
        model.load_state_dict(self.avg, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(live, strict=False)

    def live_writer(self, model: torch.nn.Module) -> dict:
        """{filename: writer(path)} for `save_model(files=...)`: the live weights, taken now (call outside `applied`)."""
        live = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        return {self.LIVE: lambda p: save_file(live, str(p))}

    @classmethod
    def resume(cls, model: torch.nn.Module, folder: Path, decay: float) -> "WeightAverage":
        """`model` holds a checkpoint's saved (averaged) weights: they become the average, and the live weights
        stored beside them (when the run had an average) go back into `model`."""
        avg = cls(model, decay)
        if (Path(folder) / cls.LIVE).exists():
            model.load_state_dict(load_file(str(Path(folder) / cls.LIVE)))
        return avg


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

    waves = decode_instrumentals(instrumentals) if "remix" in cfg.augment else []
    return Augmenter(AugmentConfig(tuple(cfg.augment), cfg.augment_prob), waves)


def decode_instrumentals(instrumentals: pd.DataFrame) -> list[np.ndarray]:
    """The instrumental rows' audio (16 kHz), unreadable files skipped with a warning."""
    waves = []
    for path in instrumentals["path"]:
        try:
            waves.append(load_audio(path))
        except AudioError as e:
            log.warning("instrumental skipped: %s", e)
    return waves


def backend_rows(tracks: pd.DataFrame, clones: bool) -> pd.DataFrame:
    """The singing rows a scoring backend is fitted on: real tracks (their vocal stem when given), and with `clones`
    the clones labelled with the singer they imitate; rows naming several singers are left out."""
    kinds = ["real", "cloned"] if clones else ["real"]
    rows = tracks[tracks["kind"].isin(kinds) & tracks["stem"].isin(["vocals", "mixture"])]
    rows = rows[rows["singer"].map(lambda s: len(singers_of(s)) == 1)]
    return rows.assign(path=[vocal_source(r) or r["path"] for _, r in rows.iterrows()], stem="vocals")


REMIX_DB = (-3.0, 6.0)  # vocal-to-accompaniment ratios of the backend's remixed views (the dev P3 mixes are at 0 dB)


def remixed_embeddings(embedder, paths: list[str], instrumentals: list[np.ndarray], separators: list, seed: int = 0,
                       progress: bool = True, remixes: int = 1) -> list[list[tuple[np.ndarray, np.ndarray] | None]]:
    """Each vocal file remixed onto a random instrumental window (seeded, at REMIX_DB), as a release would reach the
    pipeline, and read once per entry of `separators` (a separator, or None: the remix as it is) → per reading, per
    file (window embeddings [N, D], track embedding [D]), None if unreadable; with `remixes` > 1, that many remixes
    of each file onto different draws, file by file. Each remix is decoded and mixed once, whatever the readings."""
    from tqdm.auto import tqdm

    from ..augment.effects import remix
    from ..voiced import track_audio

    rng = np.random.default_rng([seed, 17])
    out: list[list[tuple[np.ndarray, np.ndarray] | None]] = [[] for _ in separators]
    for path in tqdm(paths, desc="remixed views", disable=None if progress else True, unit="track"):
        try:
            wave = load_audio(path, embedder.sample_rate)
        except AudioError as e:
            log.warning("skipped %s", e)
            for views in out:
                views += [None] * remixes
            continue
        for _ in range(remixes):
            mix = remix(wave, rng, instrumentals, float(rng.uniform(*REMIX_DB))).astype(np.float32)
            for views, sep in zip(out, separators):
                audio = track_audio(mix, embedder.window_seconds, None, sep, sample_rate=embedder.sample_rate)
                views.append((embedder.embed_windows(audio.windows), embedder.embed_track(audio.voiced)))
    return out


def fit_backend(embedder, tracks: pd.DataFrame, kind: str = "wccn", clones: bool = True, workers: int = 2,
                progress: bool = True, instrumentals: pd.DataFrame | None = None, separator=None, asnorm_k: int = 10,
                remixes: int = 1):
    """Embed the table's singing rows (windows and track embeddings, before any backend) → a fitted ScoringBackend.
    With `instrumentals` (rows with a path) and a `separator`, each row is also remixed onto them and separated
    again, labelled with its singer: the backend then damps what remixing and separation change. A distilled student
    (`reads_mixtures`) reads the remixes unseparated, as it reads queries; with a `separator` it reads them through it
    as well (a two-view catalogue's second reading, `embed.second_view`), so the backend also damps what tells the
    catalogue's readings from the queries'. `remixes`: remixed views per row (each onto another instrumental draw)."""
    from ..eval.cache import embed_files
    from ..models.backend import BackendConfig, ScoringBackend

    rows = backend_rows(tracks, clones)
    plain = type(embedder)(embedder.model, embedder.name, None, embedder.device)  # no backend on top
    views = [(w.emb, w.track) if w.error is None and len(w.emb) and w.track is not None else None
             for w in embed_files(plain, list(rows["path"]), None, workers=workers, progress=progress, vad=None)]
    labels = list(rows["singer"])
    student = getattr(embedder, "reads_mixtures", False)  # a distilled student reads the remix raw (and via `separator`)
    remix = instrumentals is not None and (separator is not None or student)
    waves = decode_instrumentals(instrumentals) if remix else []
    readings = ([None] + ([separator] if separator is not None else [])) if student else [separator]
    # a student's readings of the same remixes: raw, and separated
    for read in remixed_embeddings(plain, list(rows["path"]), waves, readings, progress=progress,
                                   remixes=remixes) if waves else []:
        views += read
        labels += [s for s in rows["singer"] for _ in range(remixes)]
    x, y = [], []
    for v, singer in zip(views, labels):
        if v is not None:
            x += [v[0], v[1][None]]
            y += [singer] * (len(v[0]) + 1)
    log.info("fitting a %s backend on %d embeddings of %d singers", kind, len(y), len(set(y)))
    return ScoringBackend.fit(np.concatenate(x), np.array(y), BackendConfig(kind=kind, asnorm_k=asnorm_k))


def remix_separator(embedder, views: str = "auto", separate: str = "spleeter", device: str | None = None):
    """What a backend fit reads its remixes through besides (a student) or instead of (any other model) the remix as
    it is: a distilled student's catalogue second view (`embed.second_view` of `views`, `separate`), the separator
    `separate` for a model behind a separation front end; None for neither."""
    from ..embed import second_view
    from ..separation import load_separator
    from ..weights import home

    cache = home() / "separated"
    if getattr(embedder, "reads_mixtures", False):
        return second_view(embedder, views, separate, device or "cpu", cache)
    return None if separate == "none" else load_separator(separate, device, cache)


def fit_run_backend(out: Path, tracks: pd.DataFrame, cfg) -> None:
    """Fit the scoring backend with the run's chosen checkpoint (on its table, remixed onto the run's instrumentals:
    separated again; a distilled student reads them raw and through its catalogues' second view) and store it in that
    checkpoint folder."""
    from ..embed import ModelEmbedder
    from ..models import load_model, resolve_checkpoint
    from ..models.identity import reads_mixtures

    folder = resolve_checkpoint(out)
    insts = instrumental_table(cfg.instrumentals, tracks)
    emb = ModelEmbedder(load_model(folder), f"checkpoint:{out.name}", reads_mixtures=reads_mixtures(folder))
    # a student: its remixes read raw and, as its catalogues enrol by default, through spleeter too
    sep = remix_separator(emb, "auto", "spleeter", cfg.device) if len(insts) else None
    backend = fit_backend(emb, tracks, cfg.scoring, cfg.clones, instrumentals=insts, separator=sep,
                          asnorm_k=cfg.asnorm_k)
    backend.save(folder)
    log.info("scoring backend (%s) stored in %s", cfg.scoring, folder)
