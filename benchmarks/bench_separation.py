"""Separation quality and speed on the dev set: dev vocals mixed onto dev instrumentals at 0 dB and -5 dB
(vocal-to-accompaniment), separated, scored by SDR and SI-SDR of the vocal estimate against the true vocal.
Also prints the real-time factor (seconds of audio per second) on this machine.

    python benchmarks/bench_separation.py [--data ../shared/data/singing-dev] [--n 40] [--backend spleeter]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from singerid.audio import load_audio
from singerid.separation import load_separator


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - est) ** 2), 1e-12)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref, est = ref - ref.mean(), est - est.mean()
    target = (est @ ref) / max(ref @ ref, 1e-12) * ref
    return float(10 * np.log10(np.sum(target**2) / max(np.sum((est - target) ** 2), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/singing-dev"))
    ap.add_argument("--n", type=int, default=40, help="vocal clips to mix")
    ap.add_argument("--backend", default="spleeter")
    a = ap.parse_args()
    t = pd.read_csv(Path(a.data) / "tracks.csv")
    vocals = t[(t["kind"] == "real") & (t["stem"] == "vocals")]["path"].tolist()
    insts = t[t["stem"] == "instrumental"]["path"].tolist()
    rng = np.random.default_rng(0)
    sep = load_separator(a.backend)
    rows, audio_s, sep_s = [], 0.0, 0.0
    for i in rng.choice(len(vocals), size=min(a.n, len(vocals)), replace=False):
        voc = load_audio(Path(a.data) / vocals[i])
        acc = load_audio(Path(a.data) / insts[int(rng.integers(len(insts)))])
        o = int(rng.integers(max(1, len(acc) - len(voc))))
        acc = np.tile(acc, len(voc) // len(acc) + 2)[o : o + len(voc)]
        for vda in (0.0, -5.0):
            a_ = acc * np.sqrt(np.mean(voc**2) / np.mean(acc**2) / 10 ** (vda / 10))
            mix = voc + a_
            t0 = time.perf_counter()
            est = sep.separate(mix)["vocals"]
            sep_s += time.perf_counter() - t0
            audio_s += len(mix) / 16000
            rows.append({"vda_db": vda, "sdr": sdr(voc, est), "si_sdr": si_sdr(voc, est), "sdr_mix": sdr(voc, mix)})
    df = pd.DataFrame(rows)
    print(f"{a.backend}: {len(df) // 2} dev vocal clips x 2 levels, {audio_s:.0f} s of audio")
    print(df.groupby("vda_db")[["sdr", "si_sdr", "sdr_mix"]].agg(["mean", "median"]).round(2).to_string())
    print(f"speed: {audio_s / sep_s:.1f} x real time (16 kHz mono in/out, model at 44.1 kHz stereo)")


if __name__ == "__main__":
    main()
