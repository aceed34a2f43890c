"""Commands for researchers: train, average, fit-scoring, embed, evaluate, sweep, analyse, splits, weights, quickstart."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data.manifest import ManifestError
from .registry import command
from .shared import _cache_dir, _experiment, _separator, load_table

log = logging.getLogger("singerid")


@command
def cmd_train(a) -> int:
    from ..train.loop import TrainConfig, train

    cfg = TrainConfig(
        manifest=a.manifest, out=a.out, mode=a.mode, model=a.config, resume=a.resume, max_steps=a.max_steps,
        seed=a.seed, batch_pairs=a.batch_pairs, lr=a.lr, epoch_steps=a.epoch_steps, val_steps=a.val_steps,
        max_epochs=a.max_epochs, lr_schedule=a.lr_schedule, num_workers=a.workers, device=a.device,
        ckpt_every=a.ckpt_every, tensorboard=a.tensorboard, separate=a.separate,
        mix_instrumentals=a.mix_instrumentals, clones=a.clones,
        instrumentals=tuple(a.instrumentals) if a.instrumentals else None, scoring=a.scoring,
        asnorm_k=a.asnorm_k, augment=_names(a.augment), freeze=_names(a.freeze), encoder_lr=a.encoder_lr,
        seconds=a.seconds, teacher=a.teacher, vda=tuple(a.vda), distill_nce=a.distill_nce,
        distill_clean=a.distill_clean, distill_stretch=tuple(a.distill_stretch) if a.distill_stretch else None,
        val_instrumentals=a.val_instrumentals,
    )
    out = train(cfg)
    print(f"checkpoint: {out} (use with --checkpoint {out})")
    return 0


def _names(v: str | None) -> tuple[str, ...] | None:
    """'a,b' → ("a", "b"); 'none' → (); None → None (the preset's)."""
    return None if v is None else tuple(n.strip() for n in v.split(",") if n.strip() not in ("", "none"))


@command
def cmd_fit_scoring(a) -> int:
    from ..data.manifest import load_tracks
    from ..embed import load_embedder
    from ..models import save_model
    from ..models.checkpoint import read_config
    from ..scoring import fit_backend, remix_separator
    from ..train.recipe import instrumental_table

    if a.remixes < 1:
        raise ValueError(f"--remixes must be at least 1, got {a.remixes}")
    emb = load_embedder(a.backend, a.checkpoint, a.device)
    tracks = load_tracks(a.manifest)
    insts = None if a.instrumentals == ["none"] else instrumental_table(a.instrumentals, tracks)
    # remixed views reach a distilled student raw, and through its catalogue's second view
    remix = insts is not None and len(insts) and (emb.reads_mixtures or a.separate != "none")
    sep = remix_separator(emb, a.enrol_views, a.separate, a.device) if remix else None  # loaded only if run
    backend = fit_backend(emb, tracks, a.kind, a.clones, a.workers, instrumentals=insts, separator=sep,
                          asnorm_k=a.asnorm_k, remixes=a.remixes)
    meta = {"fitted_from": a.checkpoint or a.backend, "manifest": a.manifest}
    if a.checkpoint:  # a distilled student still reads mixtures; the refitted backend makes a space of its own
        meta |= {k: v for k, v in read_config(a.checkpoint).items() if k in ("input", "distilled")}
    folder = save_model(Path(a.out), emb.model, meta)
    backend.save(folder)
    print(f"wrote {folder}: {emb.name} + {a.kind} scoring backend ({backend.info['n']} embeddings, "
          f"{backend.info['classes']} singers); use with --checkpoint {folder}")
    return 0


@command
def cmd_average(a) -> int:
    from ..models.average import average_checkpoints
    from ..models.checkpoint import read_config

    folder = average_checkpoints(a.checkpoints, a.out, a.weights)
    backend = "its scoring backend" if read_config(folder).get("backend") else "no scoring backend (fit-scoring next)"
    print(f"wrote {folder}: the mean of {len(a.checkpoints)} checkpoints, {backend}; use with --checkpoint {folder}")
    return 0


@command
def cmd_embed(a) -> int:
    from ..embed import load_embedder
    from ..data.manifest import load_tracks
    from ..embed import embed_tracks, write_embeddings

    if not (a.checkpoint or a.backend):
        raise ValueError("embed needs --checkpoint or --backend")
    tracks = load_tracks(a.manifest)
    if a.source != "path":
        tracks = tracks.assign(path=[v or p for v, p in zip(tracks[a.source], tracks["path"])])
    if a.ray:
        from ..distributed import ray_embed, read_shards

        out = ray_embed(tracks, a.out, a.backend, a.checkpoint, a.separate, device=a.device or "cpu")
        df = read_shards(out)
        print(f"wrote {out}/: {int((df['error'] == '').sum())} windows from {df['path'].nunique()} tracks "
              f"({int((df['error'] != '').sum())} unreadable)")
        return 0
    emb = load_embedder(a.backend, a.checkpoint, a.device or "cpu")
    sep = None
    if a.separate != "none":
        from ..separation import load_separator
        from ..weights import home

        sep = load_separator(a.separate, a.device or "cpu", home() / "separated")
    df, errors = embed_tracks(emb, tracks, "path", a.workers, separator=sep)
    if df.empty:
        raise ManifestError(f"{a.manifest}: no track could be embedded ({len(errors)} unreadable)")
    write_embeddings(df, a.out, {"checkpoint": str(a.checkpoint), "backend": emb.name, "dim": emb.dim})
    print(f"wrote {a.out}: {len(df)} windows from {df['path'].nunique()} tracks, dim {emb.dim}"
          + (f"; {len(errors)} file(s) skipped" if errors else ""))
    return 0


@command
def cmd_evaluate(a) -> int:
    import json

    from ..embed import load_embedder, second_view
    from ..eval.evaluate import evaluate
    from ..models.selfnorm import SelfNormConfig
    from ..weights import home

    emb, sep = load_embedder(a.backend, a.checkpoint, a.device), _separator(a)
    also = second_view(emb, a.enrol_views, a.separate, a.device, None if a.cache == "none" else home() / "separated")
    r = evaluate(load_table(a.enroll, a), load_table(a.query, a), emb, a.method, a.decision, _cache_dir(a), a.workers,
                 a.seed, separator=sep, auto=a.separate in ("auto", "given"), topk_compat=a.topk_compat,
                 enrol_separated=also,
                 score_norm=SelfNormConfig.named(a.score_norm))
    with open(a.json, "w") as fh:
        json.dump(r, fh, indent=1)
    views = ", enrolled raw and separated" if also is not None else ""
    print(f"{r['backend']} {r['method']}/{r['decision']}, separation {r['separation']}{views}: top-1 {100 * r['top1']:.1f} %, top-5 {100 * r['top5']:.1f} % "
          f"on {r['n']} queries, {r['singers']} singers" + (f", {r['n_errors']} unreadable" if r["n_errors"] else ""))
    return 0


@command
def cmd_sweep(a) -> int:
    from ..eval.protocol import run_sweep

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
    from ..eval.protocol import run_analyses, run_stem_similarity

    tracks, emb, cfg = _experiment(a)
    if getattr(a, "only_similarity", False):
        sim = run_stem_similarity(tracks, emb, a.out, _cache_dir(a), a.workers, _separator(a), a.seed)
        print(f"{emb.name}: mixture vs own vocal {sim['mix/vocal']['mean']:.3f}, own instrumental "
              f"{sim['mix/instru']['mean']:.3f}, same singer {sim.get('mix/same', {}).get('mean', float('nan')):.3f}, "
              f"other singer {sim.get('mix/other', {}).get('mean', float('nan')):.3f}; report in {a.out}/report.md")
        return 0
    r = run_analyses(tracks, emb, cfg, a.out, _cache_dir(a), a.workers, a.min_train, _separator(a))
    print(f"analyses of {r['classes']} singers written to {a.out}/report.md")
    return 0


@command
def cmd_convert_splits(a) -> int:
    from ..eval.datasets import load_split_files

    df = load_split_files(a.format, {"train": a.train, "val": a.val, "test": a.test}, a.audio_root)
    df.to_parquet(a.out) if a.out.endswith((".parquet", ".pq")) else df.to_csv(a.out, index=False)
    print(f"wrote {a.out}: {len(df)} tracks, {df['singer'].nunique()} artists")
    return 0


@command
def cmd_fetch_weights(a) -> int:
    from ..weights import fetch

    for name, folder in fetch(a.names or None).items():
        print(f"{name}: {folder}")
    return 0


@command
def cmd_models(a) -> int:
    from ..models import get_config, list_models

    for name in list_models():
        print(f"{name:10s} {get_config(name).description}")
    return 0


@command
def cmd_quickstart(a) -> int:
    from .. import CAVEAT
    from ..quickstart import run, summary

    r = run(a.workdir, steps=a.steps)
    print(f"trained the tiny Vocal model ({a.steps} steps) in {r['checkpoint']}; catalogue in {r['catalogue']}")
    print("whose voice is this?")
    print(summary(r["results"]))
    print(f"try: singerid identify {r['results'][0]['path']} --catalogue {r['catalogue']}")
    print(CAVEAT)
    return 0
