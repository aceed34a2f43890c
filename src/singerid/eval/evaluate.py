"""The evaluate contract (GUIDE §5): enrolment list + query list → top-1 / top-5 and per-query predictions.

Enrolment tracks define the singer set. Every query window is scored against every singer (nearest centroid or a
classifier head on the frozen embeddings); a track's ranking is the majority vote of its windows (ties broken by
summed scores). Unreadable queries count as misses and are listed with their error.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..embed import Embedder
from .cache import Windows, embed_files
from .heads import CentroidClassifier, HeadConfig, train_head
from .vote import majority_vote, mean_score_ranking

log = logging.getLogger(__name__)

METHODS = ("centroid", "head")
DECISIONS = ("vote", "mean")


def fit_classifier(windows: list[Windows], labels: list[int], n_classes: int, method: str, seed: int = 0,
                   head_cfg: HeadConfig | None = None):
    """Windows of enrolment tracks → a classifier with `.scores(emb [N, D]) -> [N, C]`."""
    if method == "centroid":
        return CentroidClassifier.fit(np.concatenate([w.emb for w in windows]),
                                      np.concatenate([[y] * len(w.emb) for w, y in zip(windows, labels)]), n_classes)
    if method != "head":
        raise ValueError(f"method must be one of {METHODS}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    val_idx = {int(rng.choice(ix)) for ix in by_class.values() if len(ix) >= 2}  # one validation track per singer
    train_idx = [i for i in range(len(windows)) if i not in val_idx]
    val_src = val_idx or set(train_idx)
    xv, yv = [], []
    for i in sorted(val_src):  # four fixed validation windows per validation track
        take = rng.choice(len(windows[i].emb), size=min(4, len(windows[i].emb)), replace=False)
        xv.append(windows[i].emb[take])
        yv += [labels[i]] * len(take)
    cfg = head_cfg or HeadConfig(seed=seed)
    return train_head([windows[i].emb for i in train_idx], np.array([labels[i] for i in train_idx]),
                      np.concatenate(xv), np.array(yv), n_classes, cfg)


def rank_tracks(clf, windows: list[Windows], decision: str = "vote") -> list[tuple[np.ndarray, np.ndarray] | None]:
    """→ per track (class ranking [C], mean window score per class [C]), None for unreadable tracks."""
    out = []
    for w in windows:
        if w.error or len(w.emb) == 0:
            out.append(None)
            continue
        s = clf.scores(w.emb)
        ranking = majority_vote(s)[0] if decision == "vote" else mean_score_ranking(s)
        out.append((ranking, s.mean(axis=0)))
    return out


def embed_table(embedder: Embedder, tracks: pd.DataFrame, cache_dir=None, workers: int = 2, separator=None,
                auto: bool = False) -> list[Windows]:
    """Embed a table's files. With `auto`, rows already marked `stem=vocals` skip separation."""
    paths = list(tracks["path"])
    if separator is None or not auto or "stem" not in tracks:
        return embed_files(embedder, paths, cache_dir, workers=workers, separator=separator)
    is_vocal = list(tracks["stem"] == "vocals")
    out: list[Windows | None] = [None] * len(paths)
    for flag, sep in ((True, None), (False, separator)):
        idx = [i for i, v in enumerate(is_vocal) if v == flag]
        if idx:
            for i, w in zip(idx, embed_files(embedder, [paths[i] for i in idx], cache_dir, workers=workers, separator=sep)):
                out[i] = w
    return out  # type: ignore[return-value]


def evaluate(
    enrol: pd.DataFrame, query: pd.DataFrame, embedder: Embedder, method: str = "centroid", decision: str = "vote",
    cache_dir=None, workers: int = 2, seed: int = 0, k: int = 5, separator=None, auto: bool = True,
) -> dict:
    ew = embed_table(embedder, enrol, cache_dir, workers, separator, auto)
    ok = [i for i, w in enumerate(ew) if not w.error and len(w.emb)]
    if len(ok) < len(ew):
        log.warning("%d enrolment file(s) unreadable and skipped", len(ew) - len(ok))
    singers = sorted({enrol["singer"].iloc[i] for i in ok})
    if len(singers) < 2:
        raise ValueError(f"need at least 2 enrolled singers with readable audio, have {len(singers)}")
    idx = {s: j for j, s in enumerate(singers)}
    clf = fit_classifier([ew[i] for i in ok], [idx[enrol["singer"].iloc[i]] for i in ok], len(singers), method, seed)
    qw = embed_table(embedder, query, cache_dir, workers, separator, auto)
    queries, top1, topk = [], 0, 0
    for (path, singer), w, r in zip(query[["path", "singer"]].itertuples(index=False), qw, rank_tracks(clf, qw, decision)):
        item = {"path": path, "singer": singer, "predicted": []}
        if r is None:
            item["error"] = w.error or "no windows"
        else:
            ranking, mean = r
            item["predicted"] = [[singers[c], round(float(mean[c]), 6)] for c in ranking[:k]]
            item["windows"] = int(len(w.emb))
            names = [p[0] for p in item["predicted"]]
            top1 += bool(names and names[0] == singer)
            topk += singer in names
        queries.append(item)
    n = len(queries)
    return {
        "top1": top1 / n if n else 0.0, "top5": topk / n if n else 0.0, "n": n, "method": method, "decision": decision,
        "backend": embedder.name, "separation": separator.name if separator is not None else "none",
        "singers": len(singers),
        "n_errors": sum("error" in q for q in queries),
        "n_not_enrolled": int(sum(s not in idx for s in query["singer"])),
        "queries": queries,
    }
