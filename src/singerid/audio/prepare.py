"""How a model's audio is prepared before its track-level embedding: each preset's `"preprocess"` block (GUIDE §8.11).

A pretrained encoder is used exactly as its reference pipeline feeds it. The `voice` preset (Resemblyzer's GE2E)
declares Resemblyzer's `preprocess_wav`: the volume raised to -30 dBFS (never lowered), then long silences removed
by webrtcvad (30-ms frames, aggressiveness 3, a moving average over 8 frames, voiced runs dilated by 3 frames on each
side). The AST presets declare what their track embedding always read: silences under -50 dB trimmed by energy, then
peak normalisation. The embedder applies the block to whatever audio a track yields (a given stem, a separated vocal,
a raw clip); `voiced.py` only separates and chooses windows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import peak_normalise

INT16_MAX = 2**15 - 1
TRIMS = ("webrtcvad", "energy", "none")


@dataclass(frozen=True)
class Preprocess:
    target_dbfs: float | None = None  # RMS level the track is brought to (None: kept as it is)
    increase_only: bool = True  # only raise quiet audio (Resemblyzer's normalize_volume)
    trim: str = "energy"  # long silences removed by "webrtcvad" (Resemblyzer), "energy" (-50 dB), or "none"
    peak: bool = True  # peak-normalise last
    vad_mode: int = 3  # webrtcvad's aggressiveness
    vad_window_ms: int = 30  # webrtcvad's frame
    vad_average: int = 8  # frames of the moving average that smooths its decisions
    vad_max_silence: int = 6  # voiced runs dilated by a structure of this + 1 frames (Resemblyzer: 7, 3 on each side)

    def __post_init__(self):
        if self.trim not in TRIMS:
            raise ValueError(f"preprocess trim must be one of {', '.join(TRIMS)}, got {self.trim!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "Preprocess":
        return cls(**(d or {}))


def normalise_volume(wave: np.ndarray, target_dbfs: float, increase_only: bool = True) -> np.ndarray:
    """[T] → [T] at `target_dbfs` RMS (Resemblyzer's normalize_volume, the same arithmetic)."""
    rms = np.sqrt(np.mean((wave * INT16_MAX) ** 2))
    if not rms > 0:
        return wave
    change = target_dbfs - 20 * np.log10(rms / INT16_MAX)  # float32 throughout for a float32 wave, as there
    if change < 0 and increase_only:
        return wave
    return wave * (10 ** (change / 20))


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    padded = np.concatenate((np.zeros((width - 1) // 2), x, np.zeros(width // 2)))
    ret = np.cumsum(padded, dtype=float)
    ret[width:] = ret[width:] - ret[:-width]
    return ret[width - 1 :] / width


def webrtc_voiced(wave: np.ndarray, sample_rate: int = 16000, mode: int = 3, window_ms: int = 30, average: int = 8,
                  max_silence: int = 6) -> np.ndarray:
    """[T] → [T'] Resemblyzer's trim_long_silences: the wave cut to whole frames, webrtcvad's decision per frame on
    16-bit PCM, smoothed and dilated, voiced frames kept. (PCM is clipped to 16 bits, where the reference would wrap
    samples beyond full scale around.)"""
    import webrtcvad

    n = window_ms * sample_rate // 1000
    wave = wave[: len(wave) - len(wave) % n]
    pcm = np.clip(np.round(wave * INT16_MAX), -INT16_MAX - 1, INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(mode)
    flags = np.array([vad.is_speech(pcm[2 * i : 2 * (i + n)], sample_rate) for i in range(0, len(wave), n)], float)
    mask = np.round(_moving_average(flags, average)).astype(bool)
    mask = np.convolve(mask, np.ones(max_silence + 1), mode="same") > 0  # binary dilation, zero border
    return wave[np.repeat(mask, n)]


def trim_silences(wave: np.ndarray, sample_rate: int = 16000, frame: float = 0.03, floor_db: float = -50.0,
                  smooth: int = 8, dilate: int = 3, min_keep: float = 1.6) -> np.ndarray:
    """[T] → [T'] with long silences cut out by energy (the AST presets' preparation): 30-ms frames are
    voiced when within `floor_db` of the loud frames (95th percentile), the flags are smoothed over `smooth` frames
    and dilated by `dilate` frames on each side. The wave is kept whole when less than `min_keep` s would remain."""
    n = int(frame * sample_rate)
    frames = len(wave) // n
    if frames < smooth:
        return wave
    level = 10 * np.log10(np.maximum(np.mean(wave[: frames * n].reshape(frames, n) ** 2, axis=1), 1e-12))
    flags = (level > np.percentile(level, 95) + floor_db).astype(float)
    mask = np.convolve(flags, np.ones(smooth) / smooth, mode="same") >= 0.5
    mask = np.convolve(mask, np.ones(2 * dilate + 1), mode="same") > 0
    if mask.sum() * n < min_keep * sample_rate:
        return wave
    return wave[: frames * n][np.repeat(mask, n)]


def prepare(wave: np.ndarray, cfg: Preprocess, sample_rate: int = 16000) -> np.ndarray:
    """[T] a track's voiced audio → [T'] as the model's reference reads it. A trim that would leave less than 0.1 s
    keeps the wave whole (silence is refused at decoding; this only guards near-silent stems)."""
    x = np.asarray(wave, np.float32)
    if cfg.target_dbfs is not None:
        x = normalise_volume(x, cfg.target_dbfs, cfg.increase_only)
    if cfg.trim == "webrtcvad":
        kept = webrtc_voiced(x, sample_rate, cfg.vad_mode, cfg.vad_window_ms, cfg.vad_average, cfg.vad_max_silence)
        x = kept if len(kept) >= 0.1 * sample_rate else x
    elif cfg.trim == "energy":
        x = trim_silences(x, sample_rate)
    return peak_normalise(x) if cfg.peak else x
