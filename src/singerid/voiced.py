"""The vocal audio of a track, the stage between decoding and the encoder:

    16 kHz wave ──[separate only what is needed]──▶ vocal stem ──vocal activity──▶ 6-s vocal windows + voiced audio

`track_audio` gives the 6-s windows (per-window evidence, heads) and the voiced audio that a track-level embedding
reads (the embedder prepares it as its model's preset declares: `audio.prepare`). A long track is not separated
whole: at most `budget` windows spread over it are separated, each with a little context
(`Separator.separate_windows`). This module decides which windows are vocal (`vocal_windows`); `vad.py` supplies the
activity of each window: the energy of a vocal stem, or, for audio that is neither separated nor known to be a stem,
the installed vocal-activity model's P(vocals) (`vad.installed_vad`; energy alone when none is installed).
`annotate_vocals` and `TrackFilter` write the same decision into a tracks table (the paper's filters: tracks ≥ 75 %
vocal windows for training, ≥ 50 % for evaluation sets, singers with ≥ 2 tracks).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .audio import WINDOW_SECONDS, AudioError, cut_windows, load_audio, peak, peak_normalise, window_starts
from .vad import VadConfig, VocalActivityModel, energy_activity, installed_vad, window_activity

log = logging.getLogger(__name__)

MAX_WINDOWS = 10  # window budget per track: at most this many 6-s windows, spread over it (60 s of voice)
CLEAN_DB = -15.0  # what separation removed, relative to the input, below which the input was a clean vocal already


def was_clean(mixture: np.ndarray, vocals: np.ndarray, floor_db: float = CLEAN_DB) -> bool:
    """Did separation remove (almost) nothing? Then the input is a vocal stem already, and the original is better
    than its separated copy (measured on the dev set: clean vocals lose 22-58 dB, 0-dB mixtures about 3 dB)."""
    removed = float(np.sum((mixture - vocals) ** 2))
    return 10 * np.log10(max(removed, 1e-20) / max(float(np.sum(mixture**2)), 1e-20)) < floor_db


def resolve_vad(vad, separator=None) -> VocalActivityModel | None:
    """The vocal-activity model that chooses windows: none where a separator runs (energy of the separated stem) or
    `vad` is None (a stem: energy); "auto" → the installed one (`$SINGERID_HOME/vad`, else None with a warning)."""
    if separator is not None or vad is None:
        return None
    return installed_vad() if isinstance(vad, str) and vad == "auto" else vad


def vocal_windows(stem: np.ndarray, mixture: np.ndarray | None, seconds: float,
                  model: VocalActivityModel | None = None, at_least_one: bool = True) -> list[float]:
    """Starts of the `seconds`-long windows of a track that hold vocals: P(vocals) > 0.5 by the vocal-activity
    `model` reading `stem` (audio neither separated nor a stem), else the energy of the vocal `stem` (relative to its
    `mixture` when given). `at_least_one`: the most vocal window when none is, so every track yields a window."""
    if model is not None:
        starts, score = model.window_scores(stem, seconds)
        flags = score > 0.5
    else:
        starts, flags, score = energy_activity(stem, mixture, VadConfig(window=seconds))
    keep = [s for s, f in zip(starts, flags) if f]
    return keep or ([starts[int(np.argmax(score))]] if at_least_one else [])


@dataclass
class TrackAudio:
    starts: list[float]  # window starts, s
    windows: np.ndarray  # [N, seconds * sr] peak-normalised 6-s windows
    voiced: np.ndarray  # [T'] the vocal audio the track embedding reads, as it is (the embedder prepares it)
    separated: bool = False  # the windows and voiced audio come from a separated vocal stem


def spread(starts: list[float], budget: int | None) -> list[float]:
    """At most `budget` of `starts`, evenly spread over them (all of them when they fit)."""
    if budget is None or len(starts) <= budget:
        return list(starts)
    return [starts[int(i)] for i in np.unique(np.linspace(0, len(starts) - 1, budget).round().astype(int))]


def separated_vocal_windows(wave: np.ndarray, separator, seconds: float = WINDOW_SECONDS,
                            budget: int | None = MAX_WINDOWS, sample_rate: int = 16000
                            ) -> tuple[list[float], np.ndarray, bool]:
    """Mixture [T] of a track longer than the budget → (starts, vocal-stem windows [N, seconds * sr], separated) of up
    to `budget` windows with vocals; `separated` False where separation removed almost nothing (`was_clean`: the
    input's own windows are returned). Windows spread over the track are separated alone (with context), judged by vocal energy,
    and further spread windows are separated in rounds until half the budget has vocals or twice the budget was
    separated."""
    top = peak(wave)
    remaining, tried, kept = window_starts(len(wave) / sample_rate, seconds), [], []  # kept: (start, vocals window)
    ratios: list[tuple[float, float, np.ndarray]] = []
    while remaining and len(kept) < (budget + 1) // 2 and len(tried) < 2 * budget:
        pick = spread(remaining, min(budget - len(kept), 2 * budget - len(tried)))
        voc = separator.separate_windows(wave, pick, seconds)
        flags, ratio = window_activity(voc, cut_windows(wave, pick, seconds, sample_rate), top)
        kept += [(s, v) for s, v, f in zip(pick, voc, flags) if f]
        ratios += list(zip(ratio, pick, voc))
        tried += pick
        remaining = [s for s in remaining if s not in set(pick)]
    if not kept:  # at least the most vocal window, so every track yields one
        _, s, v = max(ratios, key=lambda r: r[0])
        kept = [(s, v)]
    kept.sort(key=lambda sv: sv[0])
    starts, vocals = [s for s, _ in kept], np.stack([v for _, v in kept])
    mixture = cut_windows(wave, starts, seconds, sample_rate)
    clean = was_clean(mixture, vocals)
    return starts, mixture if clean else vocals, not clean


def track_audio(
    wave: np.ndarray, seconds: float = WINDOW_SECONDS, starts: list[float] | None = None, separator=None,
    vocal_only: bool = True, sample_rate: int = 16000, budget: int | None = MAX_WINDOWS, vad="auto",
) -> TrackAudio:
    """16 kHz wave → its vocal windows (N ≤ `budget`; None: no budget) and voiced audio.

    With a separator the audio comes from the separated vocal stem (only the windows used are separated when the
    track is longer than the budget), unless separation removed almost nothing (`was_clean`: a vocal stem given as
    input is kept as it is). Unless `starts` are given (e.g. the table's `vocal_segs`, all kept), only
    windows with vocal activity are kept (at least one). The voiced audio is the whole stem as it is, or, where
    only some windows were chosen, those windows end to end.

    Without a separator, `vad` (a `VocalActivityModel`, "auto": the installed one, None: energy, for stems) chooses
    the windows of the wave itself, and the voiced audio is then the chosen windows end to end (the whole wave, as with
    energy, where it kept every window)."""
    duration = len(wave) / sample_rate
    whole = budget is None or len(window_starts(duration, seconds)) <= budget
    separated = separator is not None
    if starts:
        starts = [s for s in starts if s < duration] or [0.0]
        windows = (separator.separate_windows(wave, starts, seconds) if separator is not None
                   else cut_windows(wave, starts, seconds, sample_rate))
        voiced = windows.reshape(-1)
    elif separator is not None and not whole:
        starts, windows, separated = separated_vocal_windows(wave, separator, seconds, budget, sample_rate)
        voiced = windows.reshape(-1)
    else:
        mixture, stem = (wave, separator.separate(wave)["vocals"]) if separator is not None else (None, wave)
        if mixture is not None and was_clean(mixture, stem):
            mixture, stem, separated = None, wave, False
        model = resolve_vad(vad, separator) if vocal_only else None
        found = vocal_windows(stem, mixture, seconds, model) if vocal_only else window_starts(duration, seconds)
        starts = spread(found, budget)
        windows = cut_windows(stem, starts, seconds, sample_rate)
        kept_all = model is not None and len(found) == len(window_starts(duration, seconds))
        voiced = stem if whole and (model is None or kept_all) else windows.reshape(-1)
    return TrackAudio(list(starts), peak_normalise(windows), np.asarray(voiced, np.float32), separated)


def file_audio(path: str, sample_rate: int = 16000, seconds: float = WINDOW_SECONDS, starts: list[float] | None = None,
               separator=None, vocal_only: bool = True, budget: int | None = MAX_WINDOWS, vad="auto") -> TrackAudio:
    """Decode a file → `track_audio` of it."""
    return track_audio(load_audio(path, sample_rate), seconds, starts, separator, vocal_only, sample_rate, budget, vad)


@dataclass
class TrackFilter:
    """The paper's filters: training tracks ≥ 75 % vocal, evaluation ≥ 50 %, singers with ≥ min_tracks tracks."""

    min_vocal_fraction: float = 0.75
    min_tracks: int = 2

    def apply(self, tracks: pd.DataFrame, vocal_fraction: dict[str, float]) -> pd.DataFrame:
        keep = tracks[[vocal_fraction.get(p, 0.0) >= self.min_vocal_fraction for p in tracks["path"]]]
        counts = keep.groupby("singer")["path"].transform("count")
        out = keep[counts >= self.min_tracks]
        log.info("filter %s: %d of %d tracks kept", asdict(self), len(out), len(tracks))
        return out


def annotate_vocals(tracks: pd.DataFrame, separator=None, model: VocalActivityModel | None = None,
                    window: float = 3.0, seg: float = 6.0) -> pd.DataFrame:
    """Add `vocal_fraction` (share of `window`-s windows with vocals) and `vocal_segs` (starts of `seg`-s windows with
    vocals) to a tracks table. Sources, best first: the given vocal stem, a vocal-activity model, separation."""
    fracs, segs = [], []
    for _, r in tqdm(tracks.iterrows(), total=len(tracks), desc="vocal activity", disable=None, unit="track"):
        try:
            mix = load_audio(r["path"])
            stem = r["path"] if r.get("stem") == "vocals" else (r.get("vocals_path") or None)
            if stem:
                voc, of = (mix, None) if stem == r["path"] else (load_audio(stem), mix)
                _, flags, _ = energy_activity(voc, of, VadConfig(window))
                seg_starts = vocal_windows(voc, of, seg)
            elif model is not None:
                flags = model.predict(mix)[1] > 0.5
                seg_starts = vocal_windows(mix, None, seg, model, at_least_one=False)
            elif separator is not None:
                voc = separator.separate(mix)["vocals"]
                _, flags, _ = energy_activity(voc, mix, VadConfig(window))
                seg_starts = vocal_windows(voc, mix, seg)
            else:
                raise ValueError("vocal activity needs a vocal stem, a vocal-activity model or a separator")
            fracs.append(float(np.mean(flags)))
            segs.append(json.dumps([float(s) for s in seg_starts]))
        except AudioError as e:
            log.warning("skipped %s", e)
            fracs.append(0.0)
            segs.append("")
    return tracks.assign(vocal_fraction=fracs, vocal_segs=segs)
