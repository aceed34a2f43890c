"""Lossy codec round trips in memory with PyAV: mp3 (LAME) and opus (libopus in ogg), as streamed or ripped songs."""
from __future__ import annotations

import io
import logging
from functools import lru_cache

import av
import numpy as np
import soxr

from .base import SR, finish

log = logging.getLogger(__name__)

# format → (encoder, container, codec sample rate, bitrates in bit/s drawn from)
CODECS = {
    "mp3": ("libmp3lame", "mp3", 44100, (32_000, 48_000, 64_000, 96_000, 128_000)),
    "opus": ("libopus", "ogg", 48000, (16_000, 24_000, 32_000, 48_000, 64_000)),
}
MAX_LAG = 4096  # samples at 16 kHz searched for the codec delay


def _encode(wave: np.ndarray, fmt: str, bitrate: int) -> bytes:
    """[T'] float32 at the codec's rate → encoded bytes."""
    encoder, container, rate, _ = CODECS[fmt]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(encoder, rate=rate, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    """Encoded bytes → ([T'] float32 mono, sample rate)."""
    with av.open(io.BytesIO(data)) as inp:
        stream = inp.streams.audio[0]
        parts = [f.to_ndarray().reshape(-1) for f in inp.decode(stream)]  # mono: planar or packed alike
        rate = stream.rate
    return np.concatenate(parts).astype(np.float32), rate


def _round_trip(wave: np.ndarray, fmt: str, bitrate: int) -> np.ndarray:
    """[T] at 16 kHz → encoded and decoded [T'] at 16 kHz, unaligned."""
    rate = CODECS[fmt][2]
    up = soxr.resample(wave.astype(np.float32), SR, rate).astype(np.float32)
    decoded, out_rate = _decode(_encode(up, fmt, bitrate))
    return soxr.resample(decoded, out_rate, SR) if out_rate != SR else decoded


@lru_cache(maxsize=None)
def codec_delay(fmt: str) -> int:
    """Samples at 16 kHz by which a round trip lags its input, measured once on white noise (a single sharp
    cross-correlation peak, unlike tones). 0 with FFmpeg's gapless decoding (LAME tag, ogg pre-skip)."""
    x = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32) * 0.1
    y = _round_trip(x, fmt, 64_000)
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.r_[0:MAX_LAG + 1, -MAX_LAG:0]
    lag = int(lags[np.argmax(c[lags])])
    log.debug("%s round trip delay: %d samples at 16 kHz", fmt, lag)
    return lag


def codec(wave: np.ndarray, rng: np.random.Generator, fmt: str | None = None,
          bitrate: int | None = None) -> np.ndarray:
    """Round trip through mp3 or opus at the codec's native rate (44.1 / 48 kHz, soxr), shifted by the measured
    codec_delay and cut or zero-padded to T. fmt uniform over CODECS, bitrate uniform over
    the format's list (mp3 32-128 kbit/s, opus 16-64 kbit/s): [T] at 16 kHz → [T]."""
    fmt = str(rng.choice(list(CODECS))) if fmt is None else fmt
    if fmt not in CODECS:
        raise ValueError(f"unknown codec format {fmt!r}; known: {', '.join(CODECS)}")
    bitrate = int(rng.choice(CODECS[fmt][3])) if bitrate is None else int(bitrate)
    y = _round_trip(wave, fmt, bitrate)
    lag = codec_delay(fmt)
    return finish(y[lag:] if lag >= 0 else np.pad(y, (-lag, 0)), len(wave))
