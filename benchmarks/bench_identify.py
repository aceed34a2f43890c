"""Wall time and peak memory to identify one 3-minute track on this machine, with and without separation.
Each configuration runs in a fresh process so its peak RSS is its own.

    python benchmarks/bench_identify.py [--seconds 180] [--backend voice]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(folder: str, track: str, separate: str, backend: str) -> None:
    from singerid.catalogue import Catalogue
    from singerid.data.manifest import load_tracks

    cat = Catalogue.create(Path(folder) / f"cat-{separate}", backend=backend, separate=separate)
    cat.enroll(load_tracks(Path(folder) / "data" / "tracks.csv"), progress=False)
    cat.identify(track)  # warm-up: loads models, fills caches except this track's separation
    t0 = time.perf_counter()
    if cat.separator is not None:
        cat.separator.cache_dir = None  # measure the separation, not the cache
    r = cat.identify(track)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"separate": separate, "seconds": dt, "windows": len(r["windows"]), "peak_rss_mb": rss}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--backend", default="voice")
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.child[1], a.child[2], a.backend)
    import soundfile as sf

    from singerid.testing import accompany, make_catalogue, sing
    from singerid.testing.synth import Voice

    with tempfile.TemporaryDirectory() as d:
        make_catalogue(Path(d) / "data", n_singers=4, songs_per_singer=2, seconds=8.0)
        rng = np.random.default_rng(5)
        v = Voice.random("x", rng)
        track = Path(d) / "track.flac"
        mix = sing(v, a.seconds, rng) + 0.5 * accompany(a.seconds, rng)
        sf.write(track, mix / np.abs(mix).max() * 0.9, 16000)
        print(f"identify one {a.seconds:.0f}-s track, backend {a.backend}, 2 CPU cores")
        for sep in ("none", "spleeter"):
            out = subprocess.run([sys.executable, __file__, "--backend", a.backend, "--child", d, str(track), sep],
                                 capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if not line:
                print(sep, "failed:", out.stderr[-500:])
                continue
            r = json.loads(line[-1])
            print(f"  separation {sep:8s}: {r['seconds']:6.2f} s ({a.seconds / r['seconds']:.0f}x real time), "
                  f"{r['windows']} vocal windows, peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
