"""Deterministic synthetic singers for tests and demos.

Each singer has a voice: a pitch range, a vocal-tract length (formant scale), a spectral tilt, a vibrato rate and
depth, and breathiness. A song is a melody of sung vowels (formant sets shifted by the singer's tract) over a
synthetic accompaniment (chords + bass + percussion). Every track is written as a mixture with its vocal and
accompaniment stems, plus a tracks table (GUIDE §5) pointing at them.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
# (F1, F2, F3) Hz of a few vowels for an average adult tract
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]], float)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])


@dataclass(frozen=True)
class Voice:
    name: str
    f0_low: float  # Hz
    f0_high: float
    tract: float  # formant scale (> 1: shorter tract, brighter)
    tilt: float  # dB per octave above f0
    vibrato_rate: float  # Hz
    vibrato_depth: float  # semitones
    breathiness: float  # noise-to-voice ratio

    @classmethod
    def random(cls, name: str, rng: np.random.Generator) -> "Voice":
        low = float(rng.uniform(90, 330))
        return cls(
            name=name, f0_low=low, f0_high=low * float(rng.uniform(1.5, 2.0)), tract=float(rng.uniform(0.82, 1.25)),
            tilt=float(rng.uniform(-15, -5)), vibrato_rate=float(rng.uniform(4.0, 7.0)),
            vibrato_depth=float(rng.uniform(0.1, 0.6)), breathiness=float(rng.uniform(0.005, 0.08)),
        )


def _formant_gain(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Resonance magnitude at freqs [T] for per-sample formants [T, 3] (sum of second-order peaks)."""
    g = np.zeros_like(freqs)
    for j, bw in enumerate(BANDWIDTHS):
        g += 1.0 / np.sqrt(1.0 + ((freqs - formants[:, j]) / (bw / 2.0)) ** 2)
    return g


def sing(voice: Voice, seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A sung melody [seconds * sr] float32: notes with vowels, vibrato, breath noise and short rests."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    note_len = rng.uniform(0.3, 0.7)
    n_notes = int(np.ceil(seconds / note_len))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    span = 12 * np.log2(voice.f0_high / voice.f0_low)
    steps = scale[scale <= span]
    semis = rng.choice(steps, size=n_notes)
    idx = np.minimum((t / note_len).astype(int), n_notes - 1)
    f0 = voice.f0_low * 2 ** ((semis[idx] + voice.vibrato_depth * np.sin(2 * np.pi * voice.vibrato_rate * t)) / 12)
    vowels = VOWELS[rng.integers(len(VOWELS), size=n_notes)] * voice.tract  # [notes, 3]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(n)
    n_harm = int((sr / 2 - 200) // voice.f0_low)
    for k in range(1, n_harm + 1):
        fk = k * f0
        alive = fk < sr / 2 - 200
        if not alive.any():
            break
        amp = _formant_gain(fk, vowels[idx])
        amp = amp * 10 ** (voice.tilt * np.log2(k) / 20) * alive
        out += amp * np.sin(k * phase)
    # per-note envelope with a short rest at the end of some notes
    pos = (t % note_len) / note_len
    env = np.clip(pos / 0.08, 0, 1) * np.clip((0.95 - pos) / 0.1, 0, 1)
    rest = rng.random(n_notes) < 0.15
    env = env * ~rest[idx]
    noise = rng.standard_normal(n)
    breath = np.convolve(noise, np.ones(4) / 4, mode="same") * voice.breathiness * np.std(out)
    y = (out + breath * 8) * env
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def accompany(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Chords, bass and percussion [seconds * sr] float32, a different style per call."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    bpm = rng.uniform(70, 140)
    beat = 60.0 / bpm
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    chord_len = beat * 4
    prog = rng.choice([0, 5, 7, 9, 3], size=int(np.ceil(seconds / chord_len)) + 1)
    ci = (t / chord_len).astype(int)
    y = np.zeros(n)
    bright = rng.uniform(2, 8)
    for interval in (0, 4, 7):
        f = root * 2 ** ((prog[ci] + interval) / 12)
        ph = 2 * np.pi * np.cumsum(f) / sr
        for h in range(1, 6):
            y += np.sin(h * ph) / h ** (bright / 3)
    y += 1.5 * np.sin(np.pi * np.cumsum(root * 2 ** (prog[ci] / 12)) / sr)  # bass an octave down
    hit = (t % beat) < 0.05
    y += hit * rng.standard_normal(n) * 2.0 * np.exp(-(t % beat) * 40)
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def make_catalogue(
    out: str | Path, n_singers: int = 6, songs_per_singer: int = 4, seconds: float = 8.0, seed: int = 0,
    vocal_db: float = 0.0, sr: int = SR, fmt: str = "flac",
) -> Path:
    """Write mixtures + stems + `tracks.csv` under `out`; returns the table's path.

    Columns: path (mixture), singer, song, kind, stem, vocals_path, accompaniment_path, split."""
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    voices = [Voice.random(f"singer{i:02d}", rng) for i in range(n_singers)]
    rows = []
    for i, v in enumerate(voices):
        for s in range(songs_per_singer):
            r = np.random.default_rng([seed, i, s])
            voc = sing(v, seconds, r, sr)
            acc = accompany(seconds, r, sr)
            gain = np.sqrt((np.mean(voc**2) + 1e-9) / (np.mean(acc**2) + 1e-9) / 10 ** (vocal_db / 10))
            acc = acc * gain
            mix = voc + acc
            peak = max(1.0, float(np.abs(mix).max()) / 0.95)
            stem = f"audio/{v.name}_song{s}"
            for suffix, x in (("mix", mix), ("vocals", voc), ("accomp", acc)):
                sf.write(out / f"{stem}_{suffix}.{fmt}", x / peak, sr)
            rows.append({
                "path": f"{stem}_mix.{fmt}", "singer": v.name, "song": f"{v.name}_song{s}", "kind": "real",
                "stem": "mixture", "vocals_path": f"{stem}_vocals.{fmt}", "accompaniment_path": f"{stem}_accomp.{fmt}",
                "split": "",
            })
    table = out / "tracks.csv"
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return table


def vocal_stems_table(out: str | Path, **kw):
    """`make_catalogue(out, **kw)` read back as a pandas table of its vocal stems: path (absolute), singer, song,
    stem=vocals."""
    import pandas as pd

    t = pd.read_csv(make_catalogue(out, **kw))
    return pd.DataFrame({"path": [str(Path(out) / p) for p in t["vocals_path"]], "singer": t["singer"],
                         "song": t["song"], "stem": "vocals"})
