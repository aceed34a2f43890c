"""The same identify, timed on an idle machine and with two busy CPU-hog processes beside it (bounded in time):
prints the slowdown under singerid's CPU policy and, for comparison, under torch's defaults (a thread per core,
libgomp's default 300,000-iteration spin at barriers).

    python benchmarks/bench_contention.py [--track FILE] [--repeats 3] [--hog-seconds 120]

Target (issue 8): slowdown <= 2.5x. Each configuration runs in a fresh process after a warm-up identify.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEV = Path(__file__).resolve().parents[2] / "shared/data/singing-dev"


def hog(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def child(folder: str, track: str, separate: str, repeats: int, threads: str) -> None:
    from singerid import cpu

    n = cpu.configure(None if threads == "policy" else int(threads))
    from singerid.catalogue import Catalogue
    from singerid.data.manifest import load_tracks

    cat = Catalogue.create(Path(folder) / f"cat-{separate}", backend="voice", separate=separate)
    cat.enroll(load_tracks(Path(folder) / "data" / "tracks.csv"), progress=False, workers=0)
    if cat.separator is not None:
        cat.separator.cache_dir = None
    cat.identify(track)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cat.identify(track)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": min(times), "threads": n}))


def run(folder: str, track: str, separate: str, repeats: int, threads: str) -> dict:
    env = dict(os.environ)
    if threads != "policy":  # torch's defaults, as if singerid had not set a short spin
        env["GOMP_SPINCOUNT"] = "300000"
    out = subprocess.run([sys.executable, __file__, "--child", folder, track, separate, str(repeats), threads],
                         capture_output=True, text=True, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError(out.stderr[-800:])
    return json.loads(line[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--track", help="audio file (default: a 3-min dev mixture, else a synthetic 60-s mixture)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hog-seconds", type=float, default=150.0, help="upper bound on each hog's life")
    ap.add_argument("--child", nargs=5)
    a = ap.parse_args()
    if a.child:
        folder, track, separate, repeats, threads = a.child
        return child(folder, track, separate, int(repeats), threads)
    from singerid.testing import make_catalogue

    with tempfile.TemporaryDirectory() as d:
        make_catalogue(Path(d) / "data", n_singers=4, songs_per_singer=2, seconds=8.0)
        dev = DEV / "mixtures" / "Mes_Larmes_-_kobzx2z.mp3"
        if a.track or dev.is_file():
            track = a.track or str(dev)
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_identify import synthetic_track

            track = str(synthetic_track(Path(d), 60.0))
        print(f"identify {Path(track).name}: idle vs two CPU hogs on {os.cpu_count()} CPUs (best of {a.repeats})")
        for separate in ("none", "spleeter"):
            for threads in ("policy", str(os.cpu_count() or 2)):
                idle = run(d, track, separate, a.repeats, threads)
                hogs = [mp.Process(target=hog, args=(a.hog_seconds,), daemon=True) for _ in range(2)]
                for h in hogs:
                    h.start()
                try:
                    busy = run(d, track, separate, a.repeats, threads)
                finally:
                    for h in hogs:
                        h.terminate()
                        h.join()
                label = "singerid policy" if threads == "policy" else f"torch default, {threads} thr"
                print(f"  separation {separate:8s} {label:16s}: idle {idle['seconds']:6.2f} s ({idle['threads']} thr), "
                      f"busy {busy['seconds']:6.2f} s ({busy['threads']} thr): slowdown {busy['seconds'] / idle['seconds']:.2f}x")


if __name__ == "__main__":
    main()
