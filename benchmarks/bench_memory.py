"""Peak memory of `singerid identify` on long audio (issue 32, item 7): a 2-hour 8-kHz noise MP3 and OGG written to a
temporary folder, identified against a small synthetic catalogue, each in a fresh process whose peak RSS is read
from its own rusage (os.wait4). The target: every command under 1.2 GB on any input the limits accept.

    nice -n 19 python benchmarks/bench_memory.py [--seconds 7200] [--backend voice] [--separate auto] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

LIMIT_MB = 1200


def noise_file(path: Path, seconds: float, rate: int = 8000, fmt: str = "MP3") -> Path:
    """Gaussian noise at -20 dBFS, written block by block (nothing long held in memory)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", rate, 1, format=fmt) as f:
        for _ in range(int(seconds // 60)):
            f.write((0.1 * rng.standard_normal(60 * rate)).astype(np.float32))
    return path


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, int, float]:
    """Run `cmd` → (its peak RSS in MB, exit status, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode:
        print(err[-1500:], file=sys.stderr)
    return usage.ru_maxrss / 1024, proc.returncode, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=7200.0, help="length of the noise files (default: 2 h)")
    ap.add_argument("--backend", default="voice")
    ap.add_argument("--separate", default="auto")
    ap.add_argument("--threads", default="1")
    a = ap.parse_args()
    from singerid.testing import vocal_stems_table

    env = {**os.environ, "SINGERID_THREADS": a.threads, "OMP_NUM_THREADS": a.threads}
    cli = [sys.executable, "-m", "singerid.cli", "--threads", a.threads]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vocal_stems_table(tmp / "data", n_singers=3, songs_per_singer=2, seconds=7.0, seed=3).to_csv(tmp / "t.csv", index=False)
        rss, rc, took = peak_rss_mb([*cli, "enroll", str(tmp / "t.csv"), "--catalogue", str(tmp / "cat"), "--backend",
                                     a.backend, "--separate", a.separate, "--workers", "0"], env)
        print(f"enroll (6 x 7 s): peak RSS {rss:.0f} MB, exit {rc}, {took:.0f} s", flush=True)
        for fmt, ext in (("MP3", "mp3"), ("OGG", "ogg")):
            t0 = time.perf_counter()
            f = noise_file(tmp / f"noise.{ext}", a.seconds, fmt=fmt)
            made = time.perf_counter() - t0
            pd.DataFrame({"path": [str(f)], "singer": ["noise"]}).to_csv(tmp / f"long-{ext}.csv", index=False)
            for what, cmd in (("identify", ["identify", str(f), "--catalogue", str(tmp / "cat")]),
                              ("enroll", ["enroll", str(tmp / f"long-{ext}.csv"), "--catalogue", str(tmp / f"cat-{ext}"),
                                          "--backend", a.backend, "--separate", a.separate])):
                rss, rc, took = peak_rss_mb([*cli, *cmd], env)
                verdict = "ok" if rss < LIMIT_MB and rc == 0 else f"OVER the {LIMIT_MB}-MB target" if rc == 0 else "failed"
                print(f"{what} {a.seconds / 3600:g}-h 8-kHz noise {fmt} ({f.stat().st_size / 2**20:.0f} MB, written in "
                      f"{made:.0f} s): peak RSS {rss:.0f} MB (main process), exit {rc}, {took:.0f} s: {verdict}",
                      flush=True)

if __name__ == "__main__":
    main()
