"""Studio-effect augmentations in numpy: reverb, EQ, compression, and remix onto instrumentals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .base import EPS, SR, db, draw, draw_log, finish, rms, window

BAND_KINDS = ("low", "high", "peak")
_BAND_FREQ = {"low": (80.0, 400.0), "high": (2000.0, 6000.0), "peak": (200.0, 5000.0)}  # Hz, log-uniform


def _fft_len(n: int) -> int:
    return 1 << int(np.ceil(np.log2(max(n, 2))))


def reverb_ir(rng: np.random.Generator, rt60: float, sr: int = SR) -> np.ndarray:
    """Synthetic room: Gaussian noise under an exponential decay reaching -60 dB at rt60 s, unit energy:
    → [rt60 · sr]."""
    t = np.arange(max(int(rt60 * sr), 1)) / sr
    ir = rng.standard_normal(len(t)) * 10.0 ** (-3.0 * t / rt60)
    return ir / (np.linalg.norm(ir) + EPS)


def reverb(wave: np.ndarray, rng: np.random.Generator, rt60: float | None = None,
           wet: float | None = None) -> np.ndarray:
    """(1 - wet) · dry + wet · (dry ∗ noise IR), FFT convolution, level matched to the dry RMS, tail cut at T;
    rt60 log-uniform in [0.2, 1.5] s, wet ~ U(0.1, 0.5): [T] at 16 kHz → [T]."""
    r, w = draw_log(rng, rt60, 0.2, 1.5), draw(rng, wet, 0.1, 0.5)
    ir = reverb_ir(rng, r)
    n = _fft_len(len(wave) + len(ir))
    x = wave.astype(np.float64)
    y = (1 - w) * x + w * np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[:len(wave)]
    return finish(y * rms(x) / (rms(y) + EPS), len(wave))


@dataclass(frozen=True)
class Band:
    """One EQ band: kind "low" / "high" shelf or "peak", corner or centre freq (Hz), gain (dB), width in octaves
    (peak only: the Gaussian's sigma in log2 frequency)."""
    kind: str
    freq: float
    gain_db: float
    octaves: float = 1.0

    def response_db(self, f: np.ndarray) -> np.ndarray:
        """Gain in dB at frequencies f [K] Hz (half the gain at a shelf's corner)."""
        f = np.maximum(f, 1.0)
        if self.kind == "low":
            return self.gain_db / (1.0 + (f / self.freq) ** 2)
        if self.kind == "high":
            return self.gain_db / (1.0 + (self.freq / f) ** 2)
        if self.kind == "peak":
            return self.gain_db * np.exp(-0.5 * (np.log2(f / self.freq) / self.octaves) ** 2)
        raise ValueError(f"unknown band kind {self.kind!r}; known: {', '.join(BAND_KINDS)}")


def random_bands(rng: np.random.Generator) -> list[Band]:
    """1-3 bands: kind uniform, frequency log-uniform per kind, gain ~ U(-12, 12) dB, peak width U(0.3, 1.5) oct."""
    bands = []
    for _ in range(int(rng.integers(1, 4))):
        kind = BAND_KINDS[int(rng.integers(len(BAND_KINDS)))]
        bands.append(Band(kind, draw_log(rng, None, *_BAND_FREQ[kind]), draw(rng, None, -12.0, 12.0),
                          draw(rng, None, 0.3, 1.5)))
    return bands


def eq(wave: np.ndarray, rng: np.random.Generator, bands: Sequence[Band] | None = None) -> np.ndarray:
    """Zero-phase EQ in the FFT domain (padded against wrap-around): shelves and peaks summed in dB;
    bands random (see random_bands) when not given: [T] at 16 kHz → [T]."""
    bands = random_bands(rng) if bands is None else bands
    n = _fft_len(len(wave) + 4096)
    f = np.fft.rfftfreq(n, 1.0 / SR)
    gain = 10.0 ** (sum((b.response_db(f) for b in bands), np.zeros_like(f)) / 20.0)
    return finish(np.fft.irfft(np.fft.rfft(wave.astype(np.float64), n) * gain, n), len(wave))


def _level_db(wave: np.ndarray, hop: int, win: int) -> np.ndarray:
    """Sliding RMS level in dBFS over win samples, every hop samples: [T] → [ceil(T / hop)]."""
    c = np.concatenate([[0.0], np.cumsum(np.square(wave, dtype=np.float64))])
    centres = np.arange(0, len(wave), hop)
    lo, hi = np.clip(centres - win // 2, 0, len(wave)), np.clip(centres + win // 2, 0, len(wave))
    return 10.0 * np.log10((c[hi] - c[lo]) / np.maximum(hi - lo, 1) + EPS ** 2)


def _smooth(target: np.ndarray, a_attack: float, a_release: float) -> np.ndarray:
    """One-pole attack/release smoothing of a gain-reduction curve in dB (≤ 0): [F] → [F]. A loop over frames
    (1 ms each: 6 000 for 6 s), not samples."""
    out = np.empty_like(target)
    g = 0.0
    for i, t in enumerate(target.tolist()):
        a = a_attack if t < g else a_release
        g = a * g + (1.0 - a) * t
        out[i] = g
    return out


def compress(wave: np.ndarray, rng: np.random.Generator, threshold_db: float | None = None,
             ratio: float | None = None, attack_ms: float | None = None,
             release_ms: float | None = None) -> np.ndarray:
    """Feed-forward compressor: 10-ms RMS detector every 1 ms, static curve above threshold_db (dBFS) at ratio,
    attack/release smoothing of the gain, make-up gain to the input RMS. Defaults: threshold = the wave's RMS
    level + U(-10, 2) dB, ratio log-uniform in [2, 10], attack in [1, 20] ms, release in [50, 300] ms:
    [T] at 16 kHz → [T]."""
    x = wave.astype(np.float64)
    thr = draw(rng, None, -10.0, 2.0) + db(rms(x)) if threshold_db is None else float(threshold_db)
    r = draw_log(rng, ratio, 2.0, 10.0)
    att, rel = draw_log(rng, attack_ms, 1.0, 20.0), draw_log(rng, release_ms, 50.0, 300.0)
    hop = SR // 1000
    level = _level_db(x, hop, SR // 100)
    target = np.minimum(0.0, (thr - level) * (1.0 - 1.0 / r))
    gain_db = _smooth(target, np.exp(-1.0 / att), np.exp(-1.0 / rel))  # time constants in 1-ms frames
    y = x * 10.0 ** (np.interp(np.arange(len(x)), np.arange(len(gain_db)) * hop, gain_db) / 20.0)
    return finish(y * rms(x) / (rms(y) + EPS), len(wave))


def resample_by(x: np.ndarray, factor: float) -> np.ndarray:
    """[T] → [≈T / factor]: played `factor` times faster (pitch and tempo together; linear interpolation). Gives an
    instrumental new keys and tempi."""
    return np.interp(np.arange(0, len(x) - 1, factor), np.arange(len(x)), x).astype(np.float32)


def remix(wave: np.ndarray, rng: np.random.Generator, instrumentals: Sequence[np.ndarray],
          vda_db: float | None = None) -> np.ndarray:
    """wave + a random window of a random instrumental [T_i] at vocal-to-accompaniment ratio vda_db (RMS, dB),
    scaled down when the mix peaks above 1; vda_db ~ U(-6, 12): [T] at 16 kHz → [T]."""
    if not len(instrumentals):
        raise ValueError("remix needs at least one instrumental")
    vda = draw(rng, vda_db, -6.0, 12.0)
    seg = window(np.asarray(instrumentals[int(rng.integers(len(instrumentals)))], np.float64), len(wave), rng)
    gain = rms(wave) / (rms(seg) * 10.0 ** (vda / 20.0) + EPS)
    return finish(wave.astype(np.float64) + gain * seg, len(wave))
