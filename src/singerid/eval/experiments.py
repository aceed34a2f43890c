"""The paper's experiments on frozen embeddings: closed-set N-class sweeps × R runs, and the cloned-voice protocol.

Every window is embedded once (`embed_files`, cached) and reused by every head of every run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .cache import Windows
from .evaluate import fit_classifier, rank_tracks
from .heads import HeadConfig
from .splits import SingerSplit

log = logging.getLogger(__name__)

DEFAULT_COUNTS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


@dataclass
class ExperimentConfig:
    class_counts: list[int] = field(default_factory=lambda: list(DEFAULT_COUNTS))
    runs: int = 10
    method: str = "head"
    decision: str = "vote"
    seed: int = 0
    head: HeadConfig = field(default_factory=HeadConfig)


def identification_run(
    win: dict[str, Windows], splits: dict[str, SingerSplit], singers: list[str], cfg: ExperimentConfig, seed: int,
    tests: dict[str, list[str]] | None = None,
) -> list[dict]:
    """Train on the chosen singers' training tracks, test on their test track (or on `tests[singer]`, e.g. clones).

    → one record per test track: path, singer, rank of the truth (0 = top-1; None if unscored), top-5, n_train."""
    idx = {s: j for j, s in enumerate(singers)}
    train_w, labels = [], []
    for s in singers:
        for p in splits[s].train:
            if p in win and not win[p].error and len(win[p].emb):
                train_w.append(win[p])
                labels.append(idx[s])
    if cfg.method == "head":
        clf = _head_with_fixed_val(win, splits, singers, train_w, labels, cfg, seed)
    else:
        clf = fit_classifier(train_w, labels, len(singers), "centroid")
    if tests is None:
        test_paths = [(s, splits[s].test) for s in singers]
    else:
        test_paths = [(s, p) for s in singers for p in tests.get(s, [])]
    ranked = rank_tracks(clf, [win[p] for _, p in test_paths], cfg.decision)
    records = []
    for (s, p), r in zip(test_paths, ranked):
        rank = None if r is None else int(np.where(r[0] == idx[s])[0][0])
        records.append({"path": p, "singer": s, "rank": rank, "top5": [singers[c] for c in r[0][:5]] if r else [],
                        "n_train": len(splits[s].train)})
    return records


def _head_with_fixed_val(win, splits, singers, train_w, labels, cfg, seed):
    from .heads import train_head

    xv, yv = [], []
    for j, s in enumerate(singers):
        w = win.get(splits[s].val)
        if w is None or w.error or not len(w.emb):
            continue
        take = splits[s].val_windows or list(range(min(4, len(w.emb))))
        take = [i for i in take if i < len(w.emb)] or [0]
        xv.append(w.emb[take])
        yv += [j] * len(take)
    hc = HeadConfig(**{**cfg.head.__dict__, "seed": seed})
    return train_head([w.emb for w in train_w], np.array(labels), np.concatenate(xv), np.array(yv), len(singers), hc)


def summarise(records_by_run: list[list[dict]]) -> dict:
    """Per run top-1 / top-5 (%), then mean ± std over runs."""
    t1 = [100 * np.mean([r["rank"] == 0 for r in recs]) for recs in records_by_run]
    t5 = [100 * np.mean([r["rank"] is not None and r["rank"] < 5 for r in recs]) for recs in records_by_run]
    return {"top1_mean": float(np.mean(t1)), "top1_std": float(np.std(t1)), "top5_mean": float(np.mean(t5)),
            "top5_std": float(np.std(t5)), "top1_runs": [float(x) for x in t1], "top5_runs": [float(x) for x in t5],
            "n_tests": len(records_by_run[0]) if records_by_run else 0}


def sweep(win: dict[str, Windows], splits: dict[str, SingerSplit], cfg: ExperimentConfig,
          tests: dict[str, list[str]] | None = None, label: str = "closed-set") -> dict:
    """Closed-set (tests=None) or cloned (tests = clones per singer) sweep over class counts × runs.

    Cloned: the classes are every cloned singer present in `splits` plus randomly drawn others up to N."""
    pool = sorted(splits)
    must = sorted(s for s in (tests or {}) if s in splits and tests[s])
    out: dict = {"protocol": label, "method": cfg.method, "decision": cfg.decision, "runs": cfg.runs, "results": {}, "records": {}}
    counts = [n for n in cfg.class_counts if max(len(must), 2) <= n <= len(pool)]
    if not counts:
        counts = [len(pool)]
        log.warning("no class count in %s fits %d singers: using all %d", cfg.class_counts, len(pool), len(pool))
    for n in counts:
        runs = []
        for r in tqdm(range(cfg.runs), desc=f"{label} {n} classes", disable=None, unit="run"):
            rng = np.random.default_rng([cfg.seed, n, r])
            others = [s for s in pool if s not in must]
            chosen = must + [str(x) for x in rng.choice(others, size=n - len(must), replace=False)]
            runs.append(identification_run(win, splits, sorted(chosen), cfg, seed=cfg.seed * 1000 + r, tests=tests))
        out["results"][str(n)] = summarise(runs)
        out["records"][str(n)] = runs
        res = out["results"][str(n)]
        log.info("%s, %d classes: top-1 %.1f ± %.1f, top-5 %.1f ± %.1f", label, n, res["top1_mean"], res["top1_std"],
                 res["top5_mean"], res["top5_std"])
    return out
