"""Shared helpers for the augmentations: parameter draws, levels, and the output contract ([T] float32, peak ≤ 1)."""
from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE, fit_length

SR = SAMPLE_RATE
EPS = 1e-9


def draw(rng: np.random.Generator, value: float | None, low: float, high: float) -> float:
    """value if given, else uniform in [low, high)."""
    return float(rng.uniform(low, high)) if value is None else float(value)


def draw_log(rng: np.random.Generator, value: float | None, low: float, high: float) -> float:
    """value if given, else log-uniform in [low, high) (for times, frequencies and ratios)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if value is None else float(value)


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0


def db(x: float) -> float:
    """Amplitude ratio → dB (floored at -180 dB)."""
    return float(20 * np.log10(max(x, EPS)))


def fit(wave: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad [T'] to [n] (an effect's tail is cut, a short output gets silence, never a repeat)."""
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def finish(wave: np.ndarray, n: int) -> np.ndarray:
    """The output contract: [T'] → [n] float32, finite, scaled down (not clipped) when its peak exceeds 1."""
    y = np.nan_to_num(fit(np.asarray(wave, dtype=np.float64), n), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(y))) if n else 0.0
    if peak > 1.0:
        y = y / peak
    return y.astype(np.float32)


def window(source: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random window [n] of source [T'] (repeated first when shorter than n)."""
    if len(source) < n:
        source = fit_length(source, n)
    start = int(rng.integers(0, len(source) - n + 1))
    return source[start:start + n]
