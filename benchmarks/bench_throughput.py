"""Training / inference segments per second for the model presets, and data-loader segments per second from FLAC and
MP3, on this machine. Prints a table; nothing is asserted.

    python benchmarks/bench_throughput.py [--presets paper tiny] [--seconds 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from singerid.audio import read_window
from singerid.losses import nt_xent
from singerid.models import create_model


def timed(fn, budget: float) -> tuple[int, float]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget:
        fn()
        n += 1
    return n, time.perf_counter() - t0


def model_rates(preset: str, budget: float, train_pairs: int, infer_batch: int) -> tuple[float, float]:
    model = create_model(preset, seed=0)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x_train = torch.randn(2 * train_pairs, 96000)

    def train_step():
        model.train()
        loss = nt_xent(model(x_train))["contrastive_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    x_inf = torch.randn(infer_batch, 96000)

    def infer():
        model.eval()
        with torch.inference_mode():
            model.embed(x_inf)

    n, dt = timed(train_step, budget)
    train_rate = n * 2 * train_pairs / dt
    n, dt = timed(infer, budget)
    return train_rate, n * infer_batch / dt


class Windows(Dataset):
    def __init__(self, files: list[Path], n: int):
        self.files, self.n = files, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        f = self.files[i % len(self.files)]
        return read_window(f, float(rng.uniform(0, 50)), 6.0)


def loader_rate(files: list[Path], workers: int, n: int = 200) -> float:
    dl = DataLoader(Windows(files, n), batch_size=16, num_workers=workers)
    t0 = time.perf_counter()
    for _ in dl:
        pass
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    ap.add_argument("--seconds", type=float, default=15.0, help="time budget per measurement")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print(f"{'preset':8s} {'train seg/s':>12s} {'infer seg/s':>12s}   (train batch = 2 x pairs)")
    for p in a.presets:
        pairs = 16 if p == "tiny" else 4
        tr, inf = model_rates(p, a.seconds, pairs, 32)
        print(f"{p:8s} {tr:12.1f} {inf:12.1f}   ({pairs} pairs)")
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        x = (0.1 * rng.standard_normal(60 * 44100)).astype(np.float32)
        for fmt in ("FLAC", "MP3"):
            files = []
            for i in range(4):
                f = Path(d) / f"track{i}.{fmt.lower()}"
                sf.write(f, np.stack([x, x], 1), 44100, format=fmt)
                files.append(f)
            for w in (0, 2):
                print(f"loader {fmt:4s} 44.1 kHz stereo 60-s files, {w} workers: {loader_rate(files, w):7.1f} seg/s")


if __name__ == "__main__":
    main()
