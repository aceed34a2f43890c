"""Commands for catalogue users: vocal pipeline, enrol, identify, verify, serve."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from ..audio import AudioError
from .registry import command
from .shared import _separator, load_table

log = logging.getLogger("singerid")


@command
def cmd_separate(a) -> int:
    from pathlib import Path

    import soundfile as sf

    from ..audio import SAMPLE_RATE, load_audio
    from ..separation import load_separator

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
        for k in a.stems:
            sf.write(out / f"{Path(f).stem}_{k}.flac", stems[k], SAMPLE_RATE)
        print(f"{f}: {out / Path(f).stem}_{{{','.join(a.stems)}}}.flac")
    return 2 if failed else 0


@command
def cmd_detect_vocals(a) -> int:
    from ..audio import load_audio
    from ..vad import VadConfig, energy_activity, use_vad

    model = use_vad(a.vad) if a.vad else None  # loaded once (main already made it the default)
    sep = None
    if model is None:
        from ..separation import load_separator

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
        window = model.cfg.window if model is not None else a.window
        line = "".join("#" if x else "." for x in flags)
        print(f"{f}: {100 * float(flags.mean()):.0f} % vocal  |{line}|  ({len(flags)} x {window:g} s, # = vocals)")
    return 2 if failed else 0


@command
def cmd_train_vad(a) -> int:
    from ..data.manifest import load_tracks
    from ..vad import VadModelConfig, vad_folder
    from ..vad_train import VadTrainConfig, train_vad

    out = a.out or vad_folder()
    model = VadModelConfig(**({"encoder": a.encoder} if a.encoder else {}))
    cfg = VadTrainConfig(model, epochs=a.epochs, seed=a.seed, **({"windows": a.windows} if a.windows else {}))
    _, r = train_vad([load_tracks(m) for m in a.manifest], out, cfg, splits=a.splits)
    for s in r.get("splits", []):
        print(f"split {s['seed']}: held-out window accuracy {100 * s['accuracy']:.1f} % on {s['n']} windows")
    pooled = f"pooled over {a.splits} splits" if a.splits > 1 else "held-out"
    print(f"vocal-activity model in {out}: {pooled} window accuracy {100 * r['accuracy']:.1f} % on {r['n']} windows "
          f"({100 * r['accuracy_clear']:.1f} % on the {r['n_clear']} without an ambiguous vocal share; "
          + ", ".join(f"{k} {100 * r[f'accuracy_{k}']:.1f} %" for k in ("mixture", "vocal", "instrumental"))
          + f"); {r['train_windows']} training windows, {r['train_seconds']:.0f} s")
    return 0


@command
def cmd_detect_synthetic(a) -> int:
    import json

    from ..separation import load_separator, resolve_name
    from ..synthetic import detect_file, require_detector

    detector = require_detector(a.detector)
    name = resolve_name(a.separate)
    separator = None if name == "none" else load_separator(name, a.device)
    results, failed = [], 0
    for f in a.files:
        try:
            results.append(detect_file(f, detector, separator, a.max_seconds))
        except AudioError as e:
            failed += 1
            results.append({"path": f, "error": str(e)})
            print(f"singerid detect-synthetic: error: {e}", file=sys.stderr)
    if a.json:
        print(json.dumps(results, indent=1))
    for r in [] if a.json else results:
        if "error" not in r:
            line = " ".join(f"{w['start']:.0f}s:{w['score']:.2f}" for w in r["windows"][:12])
            print(f"{r['path']}: {r['verdict']} (score {r['score']:.3f}, {r['source']})  windows: {line}")
    return 2 if failed else 0


@command
def cmd_train_detector(a) -> int:
    from ..data.manifest import load_tracks
    from ..synthetic import detector_folder
    from ..synthetic_train import DetectorTrainConfig, train_detector

    tracks, insts, separator = load_tracks(a.manifest), [], None
    if a.instrumentals:
        from ..separation import load_separator
        from ..scoring import decode_instrumentals
        from ..train.recipe import instrumental_table

        insts = decode_instrumentals(instrumental_table(a.instrumentals, tracks))
        separator = load_separator(a.separate, a.device)
    cfg = DetectorTrainConfig(remixes=a.remixes if insts else 0, seed=a.seed)
    detector, r = train_detector(tracks, cfg, instrumentals=insts, separator=separator)
    out = detector.save(a.out or detector_folder())
    t = r["thresholds"]
    print(f"synthetic-voice detector in {out}: out-of-fold EER {100 * r['pooled_eer']:.1f} % pooled over "
          f"{len(r['per_system_eer'])} held-out system(s); verdicts: synthetic >= {t['synthetic']:.3f} "
          f"({100 * t['false_alarm']:.0f} % of real voices), real <= {t['real']:.3f} ({100 * t['miss']:.0f} % of clones)")
    for system, e in r["per_system_eer"].items():
        print(f"  {system or '(one system)'}: EER {100 * e:.1f} %")
    return 0


@command
def cmd_enroll(a) -> int:
    from ..catalogue import Catalogue
    from ..data.manifest import ManifestError, readable_rows

    tracks, refused = readable_rows(load_table(a.tracks, a))  # --separate given: enrol the given stems
    if tracks.empty:
        raise ManifestError(f"{a.tracks}: no row names a readable file (each reported above); nothing enrolled")
    separate = "auto" if a.separate == "given" else a.separate  # queries are separated (auto)
    if a.ray and a.enrol_views == "mixture+separated":
        raise ValueError("--ray enrols one view of each track (a student: the raw mixture); leave --enrol-views out")
    views = "mixture" if a.ray else a.enrol_views
    existed = (Path(a.catalogue) / "catalogue.sqlite").exists()
    cat = Catalogue.create(a.catalogue, a.backend or "voice", a.checkpoint, separate, a.index, a.device, views,
                           a.score_norm)
    r = _enrol_rows(cat, tracks, a)
    failed = sorted([i for i, _ in refused] + r.get("failed_rows", []))
    n_failed = len(refused) + len(r["errors"])
    if not existed and not cat.store.count():
        _discard(cat)
        raise ManifestError(f"{a.tracks}: no row could be enrolled (each reported above); no catalogue created")
    cal = cat.calibrate(a.far)
    which = f" ({_row_list(failed)}; each reported above)" if failed else ""
    print(f"{a.catalogue}: enrolled {r['enrolled']} track(s), {r['skipped']} already there, {n_failed} not enrolled"
          f"{which}; {len(cat.singers())} singers, {cat.store.count()} tracks"
          + ("; each track read raw and separated, queries raw" if cat.second_view is not None else ""))
    _print_tiers(cal)
    if n_failed and not a.skip_bad:
        print(f"singerid enroll: error: {n_failed} row(s) not enrolled (the others are); fix them and run the same "
              "command again, or pass --skip-bad to accept this", file=sys.stderr)
        return 2
    return 0


def _row_list(labels: list) -> str:
    """Table rows (0-based labels) as people count them: "rows 2, 5"."""
    shown = ", ".join(str(int(i) + 1) for i in labels[:20])
    return f"row{'s' * (len(labels) > 1)} {shown}{' ...' if len(labels) > 20 else ''}"


def _enrol_rows(cat, tracks, a) -> dict:
    if not a.ray:
        return cat.enroll(tracks, a.workers, calibrate_after=False,
                          on_track=(lambda p, s: print(f"enrolled {s}: {p}", flush=True)) if a.verbose else None)
    from ..distributed import ray_embed, read_shards

    sep = "none" if cat.separator is None else cat.separator.name
    shards = ray_embed(tracks, Path(a.catalogue) / "ray-shards" / str(int(time.time())), cat.store.get_meta("backend"),
                       cat.store.get_meta("checkpoint"), sep, device=a.device)
    return cat.enroll_embedded(read_shards(shards), calibrate_after=False)


def _discard(cat) -> None:
    """Remove a catalogue this command created but could put nothing into (the folder too when left empty)."""
    folder = cat.folder
    cat.close()
    for name in ("catalogue.sqlite", "catalogue.sqlite-wal", "catalogue.sqlite-shm", "index.faiss", "index.json"):
        (folder / name).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def _print_tiers(cal: dict) -> None:
    for t in cal.get("tiers") or []:
        print(f"  {t['tier']:8s} (decision score >= {t['threshold']:.3f}): {_in_words(t['far'], t['n_unknown'])}; names "
              f"{100 * t['accept_real']:.0f} % of held-out real tracks right")
    if not cal.get("tiers"):
        print(f"  uncalibrated ({cal.get('reason')}): identify will answer 'unknown' and list the closest singers")


def _in_words(far: float | None, n: int | None) -> str:
    """A tier's measured false-acceptance rate as people read it."""
    if far is None:
        return "no measured rate"
    if far <= 0:
        return f"none of {n} unknown voices scored this high"
    return f"1 in {max(1, round(1 / far))} unknown voices score this high"


def _verdict(r: dict) -> str:
    """One line: the decision, its tier in words, a known imitation when the query is near one."""
    best = r["candidates"][0]["singer"]
    if r["tier"] == "match":
        line = f"match: {r['decision']} ({_in_words(r['far'], r['n_unknown'])})"
    elif r["tier"] == "possible":
        line = f"possible match: {r['decision']} ({_in_words(r['far'], r['n_unknown'])})"
    elif r["tier"] == "uncalibrated":
        line = f"unknown (uncalibrated: {r.get('calibration_note')}); closest: {best}"
    else:
        line = f"unknown: no enrolled singer is close enough (closest: {best})"
    if r.get("imitation"):
        line += f"; {r['imitation']['note']}"
    if r.get("synthetic"):
        line += f"; voice {r['synthetic']['verdict']} (synthetic score {r['synthetic']['score']:.2f})"
    return line


@command
def cmd_identify(a) -> int:
    import json

    from .. import CAVEAT
    from ..catalogue import Catalogue

    cat = Catalogue.open(a.catalogue, a.device, a.backend, a.checkpoint, readonly=True)
    from ..progress import log_progress

    from ..audio import load_audio

    results, failed = [], 0
    for f in log_progress(a.files, len(a.files), "identify", unit="files"):
        try:
            results.append(cat.identify_wave(load_audio(f, max_seconds=a.max_seconds), a.top, path=f))
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
            print(f"{r['path']}: {_verdict(r)}")
            for c in r["candidates"]:
                conf = f", P(same singer) {100 * c['confidence']:.0f} %" if c["confidence"] is not None else ""
                print(f"  {c['singer']:24s} score {c['score']:.3f}{conf}, {c['votes']} window vote(s)")
            line = " ".join(f"{w['start']:.0f}s:{w['singer']}" for w in r["windows"][:12])
            print(f"  windows: {line}{' ...' if len(r['windows']) > 12 else ''}")
        print(CAVEAT)
    return 2 if failed else 0


@command
def cmd_verify(a) -> int:
    import numpy as np

    from ..catalogue import eer, min_dcf
    from ..voiced import file_audio

    if a.catalogue:
        from ..catalogue import Catalogue

        cat = Catalogue.open(a.catalogue, a.device, readonly=True)
        emb, sep = cat.embedder, cat.separator
        thr = a.threshold if a.threshold is not None else (cat.store.get_meta("calibration") or {}).get("verify_threshold")
    else:
        from ..embed import load_embedder

        emb, sep, thr = load_embedder(a.backend, a.checkpoint, a.device), _separator(a), a.threshold
    cache: dict[str, np.ndarray] = {}

    def vec(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = emb.embed_track(file_audio(path, emb.sample_rate, emb.window_seconds, separator=sep).voiced)
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
    from .. import CAVEAT

    print(CAVEAT)
    return 0


@command
def cmd_remove_singer(a) -> int:
    from ..catalogue import Catalogue

    n = Catalogue.open(a.catalogue).remove_singer(a.singer)
    if not n:
        raise ValueError(f"singer {a.singer!r} is not in {a.catalogue}")
    print(f"removed {a.singer}: {n} track(s)")
    return 0


@command
def cmd_serve(a) -> int:
    from ..service.app import ServiceConfig, serve

    cfg = ServiceConfig(a.catalogue, a.token, a.max_upload_mb, a.max_seconds, a.timeout, a.max_queue, a.device,
                        a.read_timeout, workers=a.workers, threads=getattr(a, "threads", None),
                        request_timeout_s=a.request_timeout, header_timeout_s=a.header_timeout)
    serve(cfg, a.host, a.port)
    return 0


@command
def cmd_filter_tracks(a) -> int:
    from ..data.manifest import load_tracks
    from ..vad import use_vad
    from ..voiced import TrackFilter, annotate_vocals

    tracks = load_tracks(a.manifest)
    model = use_vad(a.vad) if a.vad else None
    sep = None
    if model is None and ((tracks["stem"] == "mixture") & (tracks["vocals_path"] == "")).any():
        from ..separation import load_separator
        from ..weights import home

        sep = load_separator(a.separate, a.device, home() / "separated")
    singing = tracks[tracks["stem"].isin(["mixture", "vocals"])]
    annotated = annotate_vocals(singing, sep, model)
    frac = dict(zip(annotated["path"], annotated["vocal_fraction"]))
    kept = TrackFilter(a.min_vocal, a.min_tracks).apply(annotated, frac)
    kept.to_parquet(a.out) if a.out.endswith((".parquet", ".pq")) else kept.to_csv(a.out, index=False)
    print(f"wrote {a.out}: {len(kept)} of {len(singing)} singing tracks kept (>= {100 * a.min_vocal:.0f} % vocal), "
          f"{kept['singer'].nunique()} singers with >= {a.min_tracks} tracks")
    return 0
