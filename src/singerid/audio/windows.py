"""6-s windowing of 16 kHz waves (the unit every model sees)."""
from __future__ import annotations

import numpy as np

from .io import SAMPLE_RATE, fit_length

WINDOW_SECONDS = 6.0


def window_starts(duration: float, seconds: float = WINDOW_SECONDS, hop: float | None = None) -> list[float]:
    """Start times (s) of windows covering a track; a track shorter than one window still yields [0.0]."""
    hop = seconds if hop is None else hop
    if duration <= seconds:
        return [0.0]
    n = int((duration - seconds) // hop) + 1
    return [round(i * hop, 3) for i in range(n)]


def cut_windows(
    wave: np.ndarray, starts: list[float], seconds: float = WINDOW_SECONDS, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """[T] → [N, seconds * sample_rate] windows starting at `starts` (short tails repeat-padded)."""
    n = int(round(seconds * sample_rate))
    out = np.empty((len(starts), n), dtype=np.float32)
    for i, s in enumerate(starts):
        a = int(round(s * sample_rate))
        out[i] = fit_length(wave[a : a + n] if a < len(wave) else wave[-n:], n)
    return out


def peak(wave: np.ndarray) -> float:
    """max |x| without an |x| copy of the wave (a 2-hour track is 460 MB at 16 kHz)."""
    return max(float(wave.max()), -float(wave.min())) if wave.size else 0.0


def peak_normalise(windows: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """[..., T] → each row scaled to peak 1 (the reference code's normalisation)."""
    peak = np.abs(windows).max(axis=-1, keepdims=True)
    return (windows / np.maximum(peak, eps)).astype(np.float32)
