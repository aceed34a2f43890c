"""Inference cost of the vocal-activity model per track, for each frozen encoder (the head's cost is negligible, so an
untrained head times the same), beside Spleeter's separation of the same track (the other way to choose windows).

    python benchmarks/bench_vad.py [--seconds 180] [--threads 2] [--repeats 3]

Needs the pretrained weights (`singerid fetch-weights`). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180.0, help="track length")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from singerid import cpu
    from singerid.separation import load_separator
    from singerid.vad import ENCODERS, VadModelConfig, VocalActivityModel

    cpu.configure(a.threads)
    rng = np.random.default_rng(0)
    t = np.arange(int(a.seconds * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    print(f"{a.seconds:.0f}-s track, {a.threads} thread(s), best of {a.repeats}")
    for name in ENCODERS:
        model = VocalActivityModel(VadModelConfig(encoder=name)).eval()
        model.predict(wave[: 16000 * 6])  # warm-up
        s = best_of(lambda: model.predict(wave), a.repeats)
        print(f"vad {name:8s} {s:6.2f} s per track ({a.seconds / s:5.1f}× real time)")
    sep = load_separator("spleeter")
    sep.separate(wave[: 16000 * 6])
    s = best_of(lambda: sep.separate(wave), a.repeats)
    print(f"spleeter separation {s:6.2f} s per track ({a.seconds / s:5.1f}× real time)")


if __name__ == "__main__":
    main()
