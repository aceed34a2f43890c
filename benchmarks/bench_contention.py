"""The same identify, timed on an idle machine and with two busy CPU-hog processes beside it (bounded in time):
prints the slowdown of each way a process can reach the encoder.

- `cli`: as the CLI and the service run (singerid imported before torch: OpenMP's short spin; `cpu.configure()`).
- `library`: a program that imported torch *first* and calls `Catalogue` directly, never configuring anything
  (libgomp's default long spin; the library's entry points apply the policy lazily: `cpu.ensure()`).
- `torch`: torch's defaults for comparison (a thread per core, libgomp's default 300,000-iteration spin).

    python benchmarks/bench_contention.py [--track FILE] [--repeats 3] [--hog-seconds 150] \\
        [--paths cli library torch] [--separation none spleeter] [--gap 11]

Target (issues 8 and 33): slowdown <= 2.5x for `cli` and `library`. Each configuration runs in a fresh process after
an enrolment and a warm-up identify; the figure is the best of `--repeats` identifies. The machine must be otherwise
idle for the idle figure to mean anything. `--gap S`: S seconds of nothing between identifies, so that each call is
isolated (the library path then has no recent CPU probe to reuse).
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
PATHS = ("cli", "library", "torch")


def hog(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def child(folder: str, track: str, separate: str, repeats: int, path: str, gap: float) -> None:
    if path == "library":  # torch first, as a program that uses torch itself would; nothing configured
        import torch
        from singerid import cpu
    else:  # singerid first (it sets OpenMP's short spin, unless the environment says otherwise), as the CLI
        from singerid import cpu
        import torch

        cpu.configure(None if path == "cli" else os.cpu_count() or 2)
    from singerid.catalogue import Catalogue
    from singerid.data.manifest import load_tracks

    cat = Catalogue.create(Path(folder) / f"cat-{separate}-{path}", backend="voice", separate=separate)
    cat.enroll(load_tracks(Path(folder) / "data" / "tracks.csv"), progress=False, workers=0)
    if cat.separator is not None:
        cat.separator.cache_dir = None
    cat.identify(track)
    times, threads = [], []
    for _ in range(repeats):
        time.sleep(gap)
        t0 = time.perf_counter()
        cat.identify(track)
        times.append(time.perf_counter() - t0)
        threads.append(torch.get_num_threads())
    print(json.dumps({"seconds": min(times), "threads": threads[times.index(min(times))]}))


def run(folder: str, track: str, separate: str, repeats: int, path: str, gap: float = 0.0) -> dict:
    env = dict(os.environ)
    if path == "torch":  # torch's defaults, as if singerid had not set a short spin
        env["GOMP_SPINCOUNT"] = "300000"
    elif path == "library":  # nothing set: libgomp reads its default when torch loads, before singerid
        for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "SINGERID_THREADS"):
            env.pop(k, None)
    out = subprocess.run([sys.executable, __file__, "--child", folder, track, separate, str(repeats), path,
                          str(gap)],
                         capture_output=True, text=True, env=env)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError(out.stderr[-800:])
    return json.loads(line[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--track", help="audio file (default: a 3-min dev mixture, else a synthetic 60-s mixture)")
    ap.add_argument("--repeats", type=int, default=3, help="timed identifies per configuration (the best counts)")
    ap.add_argument("--hog-seconds", type=float, default=150.0, help="upper bound on each hog's life")
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="ways to reach the encoder")
    ap.add_argument("--separation", nargs="+", choices=["none", "spleeter"], default=["none", "spleeter"])
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of nothing before each timed identify")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        folder, track, separate, repeats, path, gap = a.child
        return child(folder, track, separate, int(repeats), path, float(gap))
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
        print(f"identify {Path(track).name}: idle vs two CPU hogs on {os.cpu_count()} CPUs (best of {a.repeats}); "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for separate in a.separation:
            for path in a.paths:
                idle = run(d, track, separate, a.repeats, path, a.gap)
                hogs = [mp.Process(target=hog, args=(a.hog_seconds,), daemon=True) for _ in range(2)]
                for h in hogs:
                    h.start()
                try:
                    busy = run(d, track, separate, a.repeats, path, a.gap)
                finally:
                    for h in hogs:
                        h.terminate()
                        h.join()
                print(f"  separation {separate:8s} {path:8s}: idle {idle['seconds']:6.2f} s ({idle['threads']} thr), "
                      f"busy {busy['seconds']:6.2f} s ({busy['threads']} thr): slowdown "
                      f"{busy['seconds'] / idle['seconds']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
