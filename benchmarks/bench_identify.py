"""Identify one 3-minute track: per-stage times (decode, resample, separation, vocal activity, encoder, search), the
end-to-end wall time and peak memory, with and without separation, side by side with a peer: Resemblyzer's own
whole-track `embed_utterance` of the same file, run from a scratch venv (never a dependency of singerid).

    python -m venv /tmp/rvenv && /tmp/rvenv/bin/pip install torch==2.13.0 resemblyzer "setuptools<70"
    python benchmarks/bench_identify.py [--track FILE] [--peer-python /tmp/rvenv/bin/python] [--threads N]
        [--checkpoint RUN]   # also a checkpoint read without separation, e.g. a distilled student

Without --track, a real dev mixture is used when ../shared/data/singing-dev is present (else a synthetic one).
Each configuration runs in a fresh process, after a warm-up identify, so its times and peak RSS are its own; the
end-to-end time is the best of three.
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

DEV = Path(__file__).resolve().parents[2] / "shared/data/singing-dev"
PEER = r"""
import sys, time
from resemblyzer import VoiceEncoder, preprocess_wav
enc = VoiceEncoder("cpu", verbose=False)
enc.embed_utterance(preprocess_wav(sys.argv[1]))  # warm-up
t0 = time.perf_counter(); wav = preprocess_wav(sys.argv[1]); t1 = time.perf_counter(); enc.embed_utterance(wav)
t2 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1}")
"""


def child(folder: str, track: str, separate: str, threads: int | None) -> None:
    from singerid import cpu

    cpu.configure(threads)
    from singerid.audio.io import FFMPEG_FIRST, _decode_av, _decode_sf, _resample, check_file
    from singerid.catalogue import Catalogue
    from singerid.data.manifest import load_tracks
    from singerid.voiced import separated_vocal_windows, vocal_windows
    from singerid.audio import cut_windows, peak_normalise

    ckpt = separate.split("=", 1)[1] if separate.startswith("checkpoint=") else None  # e.g. a distilled student
    separate = "none" if ckpt else separate
    cat = Catalogue.create(Path(folder) / f"cat-{separate}{'-ckpt' if ckpt else ''}", backend="voice", checkpoint=ckpt,
                           separate=separate, enrol_views="mixture+separated" if ckpt else "auto")  # a student's default
    cat.enroll(load_tracks(Path(folder) / "data" / "tracks.csv"), progress=False)
    if cat.separator is not None:
        cat.separator.cache_dir = None  # measure the separation, not a cache
    cat.identify(track)  # warm-up: models loaded, allocator warm
    t = {}
    totals = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = cat.identify(track)
        totals.append(time.perf_counter() - t0)
    t["total"] = min(totals)
    # the same stages one by one
    p = check_file(track)
    t0 = time.perf_counter()
    if p.suffix.lower() in FFMPEG_FIRST:
        native, rate = _decode_av(p)
    else:
        native, rate, _ = _decode_sf(p)
    t["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    wave = _resample(native, rate, 16000)
    t["resample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if cat.separator is not None:
        starts, windows, _ = separated_vocal_windows(wave, cat.separator)
        t["separation + vocal activity"] = time.perf_counter() - t0
    else:
        starts = vocal_windows(wave, None, 6.0)
        from singerid.voiced import MAX_WINDOWS, spread

        starts = spread(starts, MAX_WINDOWS)
        windows = cut_windows(wave, starts, 6.0)
        t["vocal activity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = cat.embedder.embed_windows(peak_normalise(windows))
    t["encoder"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    names, cents = cat.centroids()
    _ = emb @ cents.T
    cat.nearest_tracks(emb.mean(axis=0) / np.linalg.norm(emb.mean(axis=0)), 5)
    t["search"] = time.perf_counter() - t0
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"separate": separate, "stages": t, "windows": len(r["windows"]), "peak_rss_mb": rss,
                      "threads": torch.get_num_threads()}))


def peer_time(python: str, track: str) -> tuple[float, float] | None:
    out = subprocess.run([python, "-c", PEER, track], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  peer failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
        return None
    load, embed = (float(x) for x in out.stdout.split()[-2:])
    return load, embed


def synthetic_track(folder: Path, seconds: float) -> Path:
    import soundfile as sf

    from singerid.testing import accompany, sing
    from singerid.testing.synth import Voice

    rng = np.random.default_rng(5)
    mix = sing(Voice.random("x", rng), seconds, rng) + 0.5 * accompany(seconds, rng)
    track = folder / "track.flac"
    sf.write(track, mix / np.abs(mix).max() * 0.9, 16000)
    return track


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--track", help="audio file to identify (default: a 3-min dev mixture, else synthetic)")
    ap.add_argument("--peer-python", default="/tmp/rvenv/bin/python", help="python of a venv with resemblyzer")
    ap.add_argument("--threads", type=int, help="torch threads (default: singerid's CPU policy)")
    ap.add_argument("--checkpoint", help="also time this checkpoint without separation (e.g. a distilled student)")
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        return child(*a.child, a.threads)
    from singerid.audio import audio_info
    from singerid.testing import make_catalogue

    with tempfile.TemporaryDirectory() as d:
        make_catalogue(Path(d) / "data", n_singers=4, songs_per_singer=2, seconds=8.0)
        dev = DEV / "mixtures" / "Mes_Larmes_-_kobzx2z.mp3"
        track = a.track or (str(dev) if dev.is_file() else str(synthetic_track(Path(d), 180.0)))
        seconds = audio_info(track).duration
        print(f"identify {Path(track).name} ({seconds:.0f} s), backend voice, 2 CPU cores")
        peer = peer_time(a.peer_python, track) if Path(a.peer_python).is_file() else None
        if peer:
            print(f"  peer Resemblyzer: preprocess_wav {peer[0]:.2f} s + embed_utterance {peer[1]:.2f} s")
        for sep in ("none", "spleeter") + ((f"checkpoint={a.checkpoint}",) if a.checkpoint else ()):
            cmd = [sys.executable, __file__, "--child", d, track, sep] + (["--threads", str(a.threads)] if a.threads else [])
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if not line:
                print(sep, "failed:", out.stderr[-800:])
                continue
            r = json.loads(line[-1])
            st = r["stages"]
            stages = ", ".join(f"{k} {v:.3f}" for k, v in st.items() if k != "total")
            vs = ""
            if peer:
                vs = (f"; {st['total'] / peer[1]:.2f}x the peer's embed_utterance, "
                      f"{st['total'] / sum(peer):.2f}x its load + embed")
            label = "none, " + Path(sep.split("=", 1)[1]).name if sep.startswith("checkpoint=") else sep
            print(f"  separation {label:8s}: {st['total']:6.2f} s end to end ({seconds / st['total']:.0f}x real time), "
                  f"{r['windows']} windows, {r['threads']} thread(s), peak RSS {r['peak_rss_mb']:.0f} MB{vs}")
            print(f"    stages (s): {stages}")


if __name__ == "__main__":
    main()
