"""End-to-end protocol runs over a tracks table: embed once, split, sweep (closed-set and cloned), analyse, report."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from ..data.manifest import singers_of
from ..embed import Embedder
from .analyses import (bucket_of, by_group, plot_groups, plot_similarity, save_json, similarity_study, stem_similarity,
                       table, write_report)
from .cache import Windows, embed_files, reads_raw
from .experiments import ExperimentConfig, resolve_counts, sweep
from .splits import fix_val_windows, make_splits, save_splits

log = logging.getLogger(__name__)


def _embed_all(embedder: Embedder, tracks: pd.DataFrame, extra: list[str], cache_dir, workers: int,
               separator=None) -> dict[str, Windows]:
    segs = {p: (v if isinstance(v, (list, tuple)) else None) for p, v in zip(tracks["path"], tracks["vocal_segs"])}
    stems = set(tracks["path"][tracks["stem"] == "vocals"]) if "stem" in tracks else set()
    out: dict[str, Windows] = {}
    for is_stem, vad in ((True, None), (False, "auto")):  # vocal stems: windows by energy, never the VAD model
        paths = sorted(p for p in set(tracks["path"]) | set(extra) if (p in stems) == is_stem)
        if paths:
            out.update(zip(paths, embed_files(embedder, paths, cache_dir, starts=[segs.get(p) for p in paths],
                                              workers=workers, separator=separator, vad=vad)))
    return out


def _prepare(tracks: pd.DataFrame, embedder: Embedder, cfg: ExperimentConfig, min_train: int, extra, cache_dir,
             workers: int, separator) -> tuple[dict, dict[str, Windows]]:
    """Song-level splits, every needed window embedded once (+ `extra(splits)` paths), validation windows fixed."""
    splits = make_splits(tracks, cfg.seed, min_train)
    if len(splits) < 2:
        raise ValueError(f"only {len(splits)} singer(s) have ≥ {min_train + 2} distinct songs "
                         f"({min_train} training + a test and a validation song); try a lower --min-train")
    needed = [p for s in splits.values() for p in (s.test, s.val, *s.train)]
    win = _embed_all(embedder, tracks[tracks["path"].isin(needed)], extra(splits), cache_dir, workers, separator)
    fix_val_windows(splits, {p: len(w.emb) for p, w in win.items()}, cfg.seed)
    return splits, win


def _config(cfg: ExperimentConfig, embedder: Embedder) -> ExperimentConfig:
    """The head reads what the model's own head read: raw encoder outputs for the `paper` model."""
    return dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, raw_input=reads_raw(embedder)))


def _clones(tracks: pd.DataFrame, splits: dict) -> dict[str, list[str]]:
    """Singer label ("A" or "A|B") → its cloned tracks, for labels naming at least one singer with a split."""
    cloned = tracks[tracks["kind"] == "cloned"]
    keep = cloned[cloned["singer"].map(lambda lab: any(s in splits for s in singers_of(lab))).astype(bool)]
    return keep.groupby("singer")["path"].apply(list).to_dict()


def run_sweep(tracks: pd.DataFrame, embedder: Embedder, cfg: ExperimentConfig, out_dir: str | Path,
              cache_dir=None, workers: int = 2, min_train: int = 3, separator=None) -> dict:
    """Closed-set sweep on the real tracks and, when the table has `kind=cloned` rows, the cloned protocol.
    Writes splits.json, results.json, records.json and report.md to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(cfg, embedder)
    splits, win = _prepare(tracks, embedder, cfg, min_train, lambda sp: [p for ps in _clones(tracks, sp).values() for p in ps],
                           cache_dir, workers, separator)
    save_splits(out / "splits.json", splits, {"seed": cfg.seed, "min_train": min_train, "backend": embedder.name,
                                              "held_out": "song"})
    results = {"backend": embedder.name, "closed": sweep(win, splits, cfg)}
    tests = _clones(tracks, splits)
    if tests:
        results["cloned"] = sweep(win, splits, cfg, tests=tests, label="cloned")
    save_json(out / "records.json", {k: v.pop("records") for k, v in results.items() if isinstance(v, dict) and "records" in v})
    save_json(out / "results.json", results)
    sections = [(f"{v['protocol']} ({v['method']}, {v['runs']} runs)", _results_table(v)) for k, v in results.items() if k != "backend"]
    write_report(out, f"singerid sweep: {embedder.name}", sections)
    return results


def _results_table(v: dict) -> str:
    rows = ["| classes | test tracks | top-1 % | top-5 % |", "|---:|---:|---:|---:|"]
    for n, r in v["results"].items():
        rows.append(f"| {n} | {r['n_tests']} | {r['top1_mean']:.1f} ± {r['top1_std']:.1f} | {r['top5_mean']:.1f} ± {r['top5_std']:.1f} |")
    return "\n".join(rows)


def run_analyses(tracks: pd.DataFrame, embedder: Embedder, cfg: ExperimentConfig, out_dir: str | Path,
                 cache_dir=None, workers: int = 2, min_train: int = 3, separator=None) -> dict:
    """Accuracy by genre and by training tracks per singer over cfg.runs runs at the largest class count that fits,
    and the similarity study. Writes analyses.json, PNGs and report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(cfg, embedder)
    stem_cols = [c for c in ("vocals_path", "accompaniment_path") if c in tracks]
    stems = {r["path"]: {"vocals": r.get("vocals_path") or None, "accompaniment": r.get("accompaniment_path") or None}
             for _, r in tracks[["path", *stem_cols]].iterrows()}
    splits, win = _prepare(tracks, embedder, cfg, min_train,
                           lambda sp: [p for s in sp.values() for p in stems.get(s.test, {}).values() if p],
                           cache_dir, workers, separator)
    n = max(resolve_counts(cfg.class_counts, len(splits)))
    res = sweep(win, splits, ExperimentConfig(**{**cfg.__dict__, "class_counts": [n]}))
    runs = res["records"][str(n)]
    genre = dict(zip(tracks["path"], tracks["genre"]))
    report, result = [], {"classes": n, "backend": embedder.name}
    g = by_group(runs, lambda r: genre.get(r["path"]) or None)
    if g:
        result["genre"] = g
        plot_groups(g, "top5", f"top-5 by genre, {n} singers", out / "genre.png")
        report.append(("Accuracy by genre (paper Fig. 2)", table(g, "genre") + "\n\n![genre](genre.png)"))
    b = by_group(runs, lambda r: bucket_of(r["n_train"]))
    result["training_tracks"] = b
    plot_groups(b, "top1", f"top-1 by training tracks per singer, {n} singers", out / "training_tracks.png", violin=True)
    report.append(("Accuracy by training tracks per singer (paper Fig. 3)", table(b, "training tracks") + "\n\n![tracks](training_tracks.png)"))
    sim = similarity_study(win, splits, stems, cfg.seed)
    result["similarity"] = sim
    plot_similarity(sim, out / "similarity.png")
    report.append(("Similarity study (paper Fig. 4)", "\n".join(
        ["| pair | mean cosine | std | tracks |", "|---|---:|---:|---:|"]
        + [f"| {k} | {v['mean']:.3f} | {v['std']:.3f} | {v['n']} |" for k, v in sim.items()]) + "\n\n![similarity](similarity.png)"))
    save_json(out / "analyses.json", result)
    write_report(out, f"singerid analyses: {embedder.name}, {n} singers, {cfg.runs} runs", report)
    return result


def run_stem_similarity(tracks: pd.DataFrame, embedder: Embedder, out_dir: str | Path, cache_dir=None, workers: int = 2,
                        separator=None, seed: int = 0) -> dict:
    """The Fig. 4 study alone, over every row with a vocals_path and an accompaniment_path (no splits needed): the
    mixtures embedded as the model reads them (`separator` in front, if any), the stems as they are, over the same
    spans as their mixture's windows. Writes stems.json, stems.png and report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    have = (tracks.get("vocals_path", "") != "") & (tracks.get("accompaniment_path", "") != "")
    rows = [{"path": r["path"], "singer": r["singer"], "song": r["song"], "vocals": r["vocals_path"],
             "accompaniment": r["accompaniment_path"]} for _, r in tracks[have].iterrows()]
    if len({r["singer"] for r in rows}) < 2:
        raise ValueError("the similarity study needs mixtures of 2+ singers with vocals_path and accompaniment_path")
    mix = dict(zip([r["path"] for r in rows], embed_files(embedder, [r["path"] for r in rows], cache_dir,
                                                             workers=workers, separator=separator)))
    stem_paths, stem_starts = [], []
    for r in rows:
        starts = [float(s) for s in mix[r["path"]].starts] or None
        for p in (r["vocals"], r["accompaniment"]):
            stem_paths.append(p)
            stem_starts.append(starts)
    wins = embed_files(embedder, stem_paths, cache_dir, starts=stem_starts, workers=workers)
    stems = dict(zip(stem_paths, wins))
    sim = stem_similarity(mix, stems, rows, seed)
    plot_similarity({k: v for k, v in sim.items() if isinstance(v, dict)}, out / "stems.png")
    save_json(out / "stems.json", {"backend": embedder.name, "separation": getattr(separator, "name", "none"), **sim})
    body = "\n".join(["| mixture vs | mean cosine | std | mixtures |", "|---|---:|---:|---:|"]
                     + [f"| {k} | {v['mean']:.3f} | {v['std']:.3f} | {v['n']} |" for k, v in sim.items() if isinstance(v, dict)])
    write_report(out, f"singerid analyse --only-similarity: {embedder.name}",
                 [("Mixture vs its stems (paper Fig. 4)", body + "\n\n![stems](stems.png)")])
    return sim
