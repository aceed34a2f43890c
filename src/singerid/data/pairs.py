"""Singer-level positive pairs (paper §3.2): per step, B distinct singers, each with two windows from two *different*
songs. Batches are a pure function of (seed, step), so a run is reproducible and resumes exactly, whatever the number
of DataLoader workers; under DDP every rank draws the same global batch and keeps its own slice of pairs.

Clone-aware pairs (`clones=True`): a `kind=cloned` row (its `singer` the voice imitated, `source_singer` whose
performance was converted) joins its target singer's pool and may be one side of a positive pair whose other side is
a real song of that singer. A clone is never a positive for its source singer (self-conversions are left out)."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..audio import WINDOW_SECONDS, AudioError, audio_info, peak_normalise, read_window
from .manifest import mixture_source, singers_of, song_keys, vocal_source

log = logging.getLogger(__name__)

MODES = ("mixture", "vocal", "hybrid")


@dataclass(frozen=True)
class Source:
    """One readable file of a track, with where its vocal windows start (None: anywhere)."""

    path: str
    duration: float
    vocal_segs: tuple[float, ...] | None
    mix_onto: tuple[tuple[str, float], ...] = ()  # (instrumental, duration): a mixture made on the fly from a stem


@dataclass
class TrackSources:
    singer: str
    song: str
    mixture: Source | None
    vocal: Source | None
    cloned: bool = False


def _durations(paths: list[str], workers: int = 8) -> dict[str, float | None]:
    def one(p: str) -> float | None:
        try:
            return audio_info(p).duration
        except AudioError as e:
            log.warning("skipping unreadable file %s", e)
            return None

    with ThreadPoolExecutor(workers) as ex:
        return dict(zip(paths, ex.map(one, paths)))


def _instrumentals(tracks: pd.DataFrame) -> tuple[tuple[str, float], ...]:
    paths = list(tracks["path"][tracks["stem"] == "instrumental"])
    if "accompaniment_path" in tracks:
        paths += [p for p in tracks["accompaniment_path"] if p]
    dur = _durations(sorted(set(paths)))
    return tuple((p, d) for p, d in sorted(dur.items()) if d)


def build_sources(tracks: pd.DataFrame, mode: str, mix_instrumentals: bool = False,
                  clones: bool = False) -> dict[str, list[TrackSources]]:
    """Singer → usable tracks for `mode`, keeping singers with ≥ 2 distinct songs (`song_keys`: every take of a song,
    a mixture and its own stem included, counts once), one of them real. `kind=real` singing by one singer, and with
    `clones` the `kind=cloned` rows of their target singer (not self-conversions).

    With `mix_instrumentals`, a track that has a vocal stem but no mixture gets a mixture made on the fly: its vocal
    window over a random window of one of the table's instrumentals (stem=instrumental rows, accompaniment_path)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    tracks = tracks.assign(song=song_keys(tracks))
    kinds = ["real", "cloned"] if clones else ["real"]
    rows = tracks[tracks["kind"].isin(kinds) & tracks["stem"].isin(["mixture", "vocals"])]
    rows = rows[rows["singer"].map(lambda s: len(singers_of(s)) == 1)]
    if "source_singer" in rows:
        rows = rows[(rows["kind"] == "real") | (rows["source_singer"] != rows["singer"])]
    files = sorted({p for _, r in rows.iterrows() for p in (mixture_source(r), vocal_source(r)) if p})
    dur = _durations(files)
    insts = _instrumentals(tracks) if mix_instrumentals else ()
    if mix_instrumentals and not insts:
        raise ValueError("mixing on the fly needs instrumentals: stem=instrumental rows or an accompaniment_path column")
    out: dict[str, list[TrackSources]] = {}
    for _, r in rows.iterrows():
        segs = tuple(r["vocal_segs"]) if isinstance(r["vocal_segs"], (list, tuple)) and r["vocal_segs"] else None
        mix, voc = mixture_source(r), vocal_source(r)
        m = Source(mix, dur[mix], segs) if mix and dur.get(mix) else None
        v = Source(voc, dur[voc], segs) if voc and dur.get(voc) else None
        if m is None and v is not None and insts:
            m = Source(v.path, v.duration, segs, insts)
        need = {"mixture": m, "vocal": v, "hybrid": m or v}[mode]
        if need is not None:
            out.setdefault(r["singer"], []).append(TrackSources(r["singer"], r["song"], m, v, r["kind"] == "cloned"))
    eligible = {s: t for s, t in out.items() if len({x.song for x in t}) >= 2 and not all(x.cloned for x in t)}
    if len(eligible) < len(out):
        log.info("%d singer(s) dropped: fewer than 2 songs usable in %s mode", len(out) - len(eligible), mode)
    return dict(sorted(eligible.items()))


def split_singers(singers: list[str], tracks: pd.DataFrame, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train/validation singers: the table's `split` column (train/val) when given, else a seeded fraction."""
    marked = tracks.drop_duplicates("singer").set_index("singer")["split"].to_dict()
    if any(marked.get(s) in ("val", "valid", "validation") for s in singers):
        val = [s for s in singers if marked.get(s) in ("val", "valid", "validation")]
        return [s for s in singers if s not in val], val
    n_val = int(round(len(singers) * val_fraction))
    if len(singers) < 10 or n_val < 2:
        log.warning("only %d singers: validating on fixed pairs of the training singers", len(singers))
        return singers, singers
    rng = np.random.default_rng(seed)
    val = sorted(rng.choice(singers, size=n_val, replace=False).tolist())
    return [s for s in singers if s not in val], val


def _window_start(src: Source, rng: np.random.Generator, seconds: float) -> float:
    if src.vocal_segs:
        ok = [s for s in src.vocal_segs if s < src.duration]
        if ok:
            return float(rng.choice(ok))
    return float(rng.uniform(0.0, max(0.0, src.duration - seconds)))


class PairBatches(Dataset):
    """Index = step → (waves [2b, T] float32, singer ids [2b]); views 2i and 2i+1 are a positive pair.

    b = this rank's share of min(batch_pairs, n_singers) pairs."""

    def __init__(
        self,
        sources: dict[str, list[TrackSources]],
        singers: list[str],
        mode: str,
        batch_pairs: int,
        seed: int,
        steps: int,
        rank: int = 0,
        world: int = 1,
        seconds: float = WINDOW_SECONDS,
        sample_rate: int = 16000,
        augment=None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if len(singers) < 2:
            raise ValueError(f"need at least 2 singers with 2+ songs for contrastive pairs, have {len(singers)}")
        self.sources, self.singers, self.mode = sources, list(singers), mode
        self.batch_pairs = min(batch_pairs, len(self.singers))
        if self.batch_pairs < batch_pairs:
            log.warning("batch of %d pairs capped at %d: one pair per distinct singer", batch_pairs, self.batch_pairs)
        self.seed, self.steps, self.rank, self.world = seed, steps, rank, world
        self.seconds, self.sample_rate = seconds, sample_rate
        self.augment = augment  # (wave [T], rng) → [T], e.g. singerid.augment.Augmenter; None for validation

    def __len__(self) -> int:
        return self.steps

    def plan(self, step: int) -> list[tuple[str, Source, Source]]:
        """The global batch of `step`: [(singer, source_a, source_b)], deterministic."""
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.singers), size=self.batch_pairs, replace=False)
        pairs = []
        for i in chosen:
            singer = self.singers[i]
            a, b = self._pair(self.sources[singer], rng)
            pairs.append((singer, self._side(a, rng), self._side(b, rng)))
        return pairs

    @staticmethod
    def _pair(tracks: list[TrackSources], rng: np.random.Generator) -> tuple[TrackSources, TrackSources]:
        """Two tracks of two different songs; with clones in the pool, one side is always a real track."""
        if not any(t.cloned for t in tracks):
            songs = sorted({t.song for t in tracks})
            sa, sb = rng.choice(len(songs), size=2, replace=False)
            ta = [t for t in tracks if t.song == songs[sa]]
            tb = [t for t in tracks if t.song == songs[sb]]
            return ta[rng.integers(len(ta))], tb[rng.integers(len(tb))]
        real_songs = sorted({t.song for t in tracks if not t.cloned})
        sa = real_songs[rng.integers(len(real_songs))]
        ta = [t for t in tracks if t.song == sa and not t.cloned]
        others = sorted({t.song for t in tracks} - {sa})
        sb = others[rng.integers(len(others))]
        tb = [t for t in tracks if t.song == sb]
        pair = (ta[rng.integers(len(ta))], tb[rng.integers(len(tb))])
        return pair if rng.random() < 0.5 else pair[::-1]

    def _side(self, t: TrackSources, rng: np.random.Generator) -> Source:
        if self.mode == "mixture":
            return t.mixture
        if self.mode == "vocal":
            return t.vocal
        options = [s for s in (t.mixture, t.vocal) if s is not None]
        return options[rng.integers(len(options))]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, list[str]]:
        pairs = self.plan(step)[self.rank :: self.world]
        rng = np.random.default_rng([self.seed, step, 1])
        waves, names = [], []
        for singer, a, b in pairs:
            for src in (a, b):
                waves.append(self._read(src, rng))
                names.append(singer)
        return torch.from_numpy(peak_normalise(np.stack(waves))), names

    def _read(self, src: Source, rng: np.random.Generator) -> np.ndarray:
        for _ in range(4):  # a silent stretch is redrawn; a bad file fails loudly after a few tries
            start = _window_start(src, rng, self.seconds)
            try:
                x = read_window(src.path, start, self.seconds, self.sample_rate)
                x = self._mix(x, src, rng) if src.mix_onto else x
                return self.augment(x, rng).astype(np.float32) if self.augment is not None else x
            except AudioError as e:
                err = e
        raise err

    def _mix(self, vocal: np.ndarray, src: Source, rng: np.random.Generator) -> np.ndarray:
        """Vocal window + a random instrumental window at a random vocal-to-accompaniment ratio (−5…+5 dB)."""
        path, dur = src.mix_onto[int(rng.integers(len(src.mix_onto)))]
        acc = read_window(path, float(rng.uniform(0, max(0.0, dur - self.seconds))), self.seconds, self.sample_rate)
        gain = np.sqrt(np.mean(vocal**2) / max(float(np.mean(acc**2)), 1e-12) / 10 ** (rng.uniform(-5, 5) / 10))
        return (vocal + gain * acc).astype(np.float32)
