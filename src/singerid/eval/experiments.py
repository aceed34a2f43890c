"""The paper's experiments on frozen embeddings: closed-set N-class sweeps × R runs, and the cloned-voice protocol.

Every window is embedded once (`embed_files`, cached) and reused by every head of every run. A class count may be
"all" (every singer with a split). Test tracks may name several singers ("A|B", clones of duets): right if any is
predicted, as in the reference code.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..data.manifest import singers_of
from .cache import Windows
from .evaluate import fit_classifier, rank_tracks
from .heads import HeadConfig
from .splits import SingerSplit
from .vote import truth_rank

log = logging.getLogger(__name__)

DEFAULT_COUNTS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]


@dataclass
class ExperimentConfig:
    class_counts: list[int | str] = field(default_factory=lambda: list(DEFAULT_COUNTS))  # ints and/or "all"
    runs: int = 10
    method: str = "head"
    decision: str = "vote"
    topk_compat: str = "ours"  # "reference": vote ties broken arbitrarily, as the paper's code (Table 2)
    seed: int = 0
    head: HeadConfig = field(default_factory=HeadConfig)


def resolve_counts(counts: list[int | str], n_singers: int, least: int = 2) -> list[int]:
    """Class counts that fit `n_singers` ("all" → n_singers), sorted and unique; all singers if none fits."""
    fit = sorted({n_singers if c == "all" else int(c) for c in counts} & set(range(max(least, 2), n_singers + 1)))
    if not fit:
        log.warning("no class count in %s fits %d singers: using all %d", counts, n_singers, n_singers)
    return fit or [n_singers]


def identification_run(
    win: dict[str, Windows], splits: dict[str, SingerSplit], singers: list[str], cfg: ExperimentConfig, seed: int,
    tests: dict[str, list[str]] | None = None,
) -> list[dict]:
    """Train on the chosen singers' training tracks, test on their test track (or on `tests[label]`, e.g. clones; a
    label "A|B" is tested when all its singers with a split are among the chosen, and right if any is predicted).

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
        test_paths = [(s, [s], splits[s].test) for s in singers]
    else:
        test_paths = []
        for label, paths in sorted(tests.items()):
            truth = [s for s in singers_of(label) if s in splits]
            if truth and set(truth) <= set(idx):
                test_paths += [(label, truth, p) for p in paths]
    ranked = rank_tracks(clf, [win[p] for _, _, p in test_paths], cfg.decision, cfg.topk_compat, seed)
    records = []
    for (label, truth, p), r in zip(test_paths, ranked):
        records.append({"path": p, "singer": label, "rank": None if r is None else truth_rank(r[0], [idx[s] for s in truth]),
                        "top5": [singers[c] for c in r[0][:5]] if r else [],
                        "n_train": min(len(splits[s].train) for s in truth)})
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
        xv.append(w.features(cfg.head.raw_input)[take])
        yv += [j] * len(take)
    hc = HeadConfig(**{**cfg.head.__dict__, "seed": seed})
    return train_head([w.features(hc.raw_input) for w in train_w], np.array(labels), np.concatenate(xv), np.array(yv),
                      len(singers), hc)


def summarise(records_by_run: list[list[dict]]) -> dict:
    """Per run top-1 / top-5 (%), then mean ± std over runs."""
    t1 = [100 * np.mean([r["rank"] == 0 for r in recs]) for recs in records_by_run]
    t5 = [100 * np.mean([r["rank"] is not None and r["rank"] < 5 for r in recs]) for recs in records_by_run]
    return {"top1_mean": float(np.mean(t1)), "top1_std": float(np.std(t1)), "top5_mean": float(np.mean(t5)),
            "top5_std": float(np.std(t5)), "top1_runs": [float(x) for x in t1], "top5_runs": [float(x) for x in t5],
            "n_tests": len(records_by_run[0]) if records_by_run else 0}


def sweep(win: dict[str, Windows], splits: dict[str, SingerSplit], cfg: ExperimentConfig,
          tests: dict[str, list[str]] | None = None, label: str = "closed-set") -> dict:
    """Closed-set (tests=None) or cloned (tests = clone paths per singer label, "A|B" for several) sweep over class
    counts × runs.

    Cloned: the classes are every cloned singer present in `splits` plus randomly drawn others up to N."""
    pool = sorted(splits)
    must = sorted({s for lab, paths in (tests or {}).items() if paths for s in singers_of(lab) if s in splits})
    out: dict = {"protocol": label, "method": cfg.method, "decision": cfg.decision, "topk_compat": cfg.topk_compat,
                 "runs": cfg.runs, "results": {}, "records": {}}
    for n in resolve_counts(cfg.class_counts, len(pool), len(must)):
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
