"""Server memory after bursts of concurrent identifies (issue 32, item 12): `singerid serve` on a small synthetic
catalogue (pretrained `voice` backend, Spleeter in front), then B bursts of N concurrent `POST /identify` of a 30-s
synthetic mixture; the server's resident memory (VmRSS) before, at the end of each burst and after it settles.

    python benchmarks/bench_service_rss.py [--bursts 3] [--concurrent 50] [--max-queue 8] [--settle 10]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

TOKEN = "bench-token"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after a burst before RSS is read again")
    a = ap.parse_args()
    from singerid.catalogue import Catalogue
    from singerid.data.manifest import load_tracks
    from singerid.testing import make_catalogue
    from singerid.testing.synth import Voice, accompany, sing

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = make_catalogue(tmp / "data", n_singers=4, songs_per_singer=2, seconds=7.0, seed=3)
        Catalogue.create(tmp / "cat", backend="voice").enroll(load_tracks(table), progress=False)
        rng = np.random.default_rng(0)
        mix = sing(Voice.random("q", rng), 30.0, rng) + 0.5 * accompany(30.0, rng)
        sf.write(tmp / "q.flac", (0.8 * mix / np.abs(mix).max()).astype(np.float32), 16000)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "singerid.cli", "serve", "--catalogue", str(tmp / "cat"),
                                 "--port", str(port), "--token", TOKEN, "--max-queue", str(a.max_queue)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            data = (tmp / "q.flac").read_bytes()

            def one(_):
                r = httpx.post(url + "/identify", files={"file": ("q.flac", data, "audio/flac")}, timeout=300)
                return r.status_code

            httpx.post(url + "/identify", files={"file": ("q.flac", data, "audio/flac")}, timeout=300)  # warm-up
            time.sleep(a.settle)
            print(f"idle after one identify: {rss_mb(proc.pid):.0f} MB", flush=True)
            for b in range(a.bursts):
                t0 = time.perf_counter()
                with cf.ThreadPoolExecutor(a.concurrent) as ex:
                    codes = list(ex.map(one, range(a.concurrent)))
                end = rss_mb(proc.pid)
                time.sleep(a.settle)
                print(f"burst {b + 1}: {a.concurrent} requests in {time.perf_counter() - t0 - a.settle:.0f} s "
                      f"({codes.count(200)} × 200, {codes.count(503)} × 503); RSS at its end {end:.0f} MB, "
                      f"{a.settle:g} s later {rss_mb(proc.pid):.0f} MB", flush=True)
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
