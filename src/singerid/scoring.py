"""Fitting a scoring backend (centring + WCCN/LDA, AS-norm cohort) on a tracks table: its singing rows' embeddings and,
to damp what remixing and separation change, the same rows remixed onto instrumentals and read again (`singerid
fit-scoring`, and a training run's `--scoring`)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .audio import AudioError, load_audio
from .augment.effects import remix
from .data.manifest import singers_of, vocal_source
from .embed import second_view
from .eval.cache import embed_files
from .models.backend import BackendConfig, ScoringBackend
from .separation import load_separator
from .voiced import track_audio
from .weights import home

log = logging.getLogger(__name__)


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
    cache = home() / "separated"
    if getattr(embedder, "reads_mixtures", False):
        return second_view(embedder, views, separate, device or "cpu", cache)
    return None if separate == "none" else load_separator(separate, device, cache)
