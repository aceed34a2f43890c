"""The evaluate contract (GUIDE §5): enrolment list + query list → top-1 / top-5 and per-query predictions.

Enrolment tracks define the singer set. A query is scored against every singer (nearest centroid or a classifier head
on the frozen embeddings) by its track-level embedding (`decision="track"`, the default: every 1.6-s partial of its
voiced audio, Resemblyzer-style), or window by window with the majority vote of its 6-s windows (ties broken by summed
scores, or arbitrarily with `topk_compat="reference"`, as in the paper's code) or their mean score. A query whose
`singer` names several singers ("A|B") is right if any of them is predicted. Unreadable queries count as misses and
are listed with their error.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..cpu import ensure as ensure_cpu_policy
from ..data.manifest import singers_of
from ..embed import Embedder
from ..models.selfnorm import DEFAULT_SCORE_NORM, SelfNormConfig
from .cache import Windows, as_tracks, embed_files, reads_raw, with_second_view
from .heads import CentroidClassifier, HeadConfig, train_head
from .vote import TOPK_COMPAT, majority_vote, mean_score_ranking, truth_rank

log = logging.getLogger(__name__)

METHODS = ("centroid", "head")
DECISIONS = ("track", "vote", "mean")  # track: the track-level embedding (all partials of the voiced audio)


def fit_classifier(windows: list[Windows], labels: list[int], n_classes: int, method: str, seed: int = 0,
                   head_cfg: HeadConfig | None = None, songs: list[str] | None = None, backend=None,
                   score_norm: SelfNormConfig | None = None):
    """Windows of enrolment tracks → a classifier with `.scores(features [N, D]) -> [N, C]` (centroids score
    normalised by the enrolment's own statistics, `score_norm`, as a catalogue does; None: cosine, or the
    embedder's scoring `backend`'s AS-norm when it keeps a cohort).

    The head validates on one held-out song per singer with ≥ 2 songs (`songs`, one per track; default: every track
    its own song): four fixed windows of its first take, and none of its takes in training."""
    if method == "centroid":
        return CentroidClassifier.fit(np.concatenate([w.emb for w in windows]),
                                      np.concatenate([[y] * len(w.emb) for w, y in zip(windows, labels)]), n_classes,
                                      backend, score_norm)
    if method != "head":
        raise ValueError(f"method must be one of {METHODS}")
    cfg = head_cfg or HeadConfig(seed=seed)
    rng = np.random.default_rng(seed)
    by_class: dict[int, dict[str, list[int]]] = {}
    for i, (y, song) in enumerate(zip(labels, songs or [str(i) for i in range(len(windows))])):
        by_class.setdefault(y, {}).setdefault(song, []).append(i)
    held = [list(g.values())[int(rng.integers(len(g)))] for g in by_class.values() if len(g) >= 2]
    train_idx = [i for i in range(len(windows)) if not any(i in takes for takes in held)]
    feats = [w.features(cfg.raw_input) for w in windows]
    xv, yv = [], []
    for i in sorted(takes[0] for takes in held) or train_idx:  # four fixed validation windows per validation track
        take = rng.choice(len(feats[i]), size=min(4, len(feats[i])), replace=False)
        xv.append(feats[i][take])
        yv += [labels[i]] * len(take)
    return train_head([feats[i] for i in train_idx], np.array([labels[i] for i in train_idx]),
                      np.concatenate(xv), np.array(yv), n_classes, cfg)


def rank_tracks(clf, windows: list[Windows], decision: str = "vote", compat: str = "ours",
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """→ per track (class ranking [C], mean window score per class [C]), None for unreadable tracks.
    `compat="reference"` (vote only): vote ties broken arbitrarily, seeded, as the paper's code does."""
    if compat == "reference" and decision != "vote":
        raise ValueError("the reference top-k is defined for the majority vote only (decision='vote')")
    rng = np.random.default_rng([seed, 5])
    out = []
    for w in windows:
        if w.error or len(w.emb) == 0:
            out.append(None)
            continue
        s = clf.scores(w.features(clf.raw_input))
        ranking = majority_vote(s, compat, rng)[0] if decision == "vote" else mean_score_ranking(s)
        out.append((ranking, s.mean(axis=0)))
    return out


def embed_table(embedder: Embedder, tracks: pd.DataFrame, cache_dir=None, workers: int = 2, separator=None,
                auto: bool = False) -> list[Windows]:
    """Embed a table's files. With `auto`, rows already marked `stem=vocals` skip separation. Rows marked
    `stem=vocals` have their windows chosen by energy, never by the vocal-activity model (that is for mixtures)."""
    paths = list(tracks["path"])
    if "stem" not in tracks or (separator is not None and not auto):
        return embed_files(embedder, paths, cache_dir, workers=workers, separator=separator)
    is_vocal = list(tracks["stem"] == "vocals")
    out: list[Windows | None] = [None] * len(paths)
    for flag, sep, vad in ((True, separator if not auto else None, None), (False, separator, "auto")):
        idx = [i for i, v in enumerate(is_vocal) if v == flag]
        if idx:
            for i, w in zip(idx, embed_files(embedder, [paths[i] for i in idx], cache_dir, workers=workers,
                                             separator=sep, vad=vad)):
                out[i] = w
    return out  # type: ignore[return-value]


def evaluate(
    enrol: pd.DataFrame, query: pd.DataFrame, embedder: Embedder, method: str = "centroid", decision: str = "track",
    cache_dir=None, workers: int = 2, seed: int = 0, k: int = 5, separator=None, auto: bool = True,
    topk_compat: str = "ours", enrol_separated=None,
    score_norm: SelfNormConfig | None = SelfNormConfig.named(DEFAULT_SCORE_NORM),
) -> dict:
    """Enrol `enrol`'s tracks, classify `query`'s, both with `embedder` (`separator` in front). `enrol_separated` (a
    separator, from `embed.second_view`): each enrolment track also read through it, the two track embeddings averaged.
    `score_norm`: centroid scores normalised by the enrolment's own statistics, as a catalogue scores (None: off)."""
    if topk_compat not in TOPK_COMPAT:
        raise ValueError(f"topk_compat must be one of {TOPK_COMPAT}")
    ensure_cpu_policy()
    several = [len(singers_of(s)) > 1 for s in enrol["singer"]]
    if any(several):
        log.warning("%d enrolment row(s) naming several singers skipped: enrol each singer's own tracks", sum(several))
        enrol = enrol[~pd.Series(several, index=enrol.index)]
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    ew = embed_table(embedder, enrol, cache_dir, workers, separator, auto)
    if enrol_separated is not None:
        ew = [with_second_view(w, o) for w, o in zip(ew, embed_table(embedder, enrol, cache_dir, workers,
                                                                      enrol_separated, auto))]
    if decision == "track":
        ew = as_tracks(ew)
    ok = [i for i, w in enumerate(ew) if not w.error and len(w.emb)]
    if len(ok) < len(ew):
        log.warning("%d enrolment file(s) unreadable and skipped", len(ew) - len(ok))
    singers = sorted({enrol["singer"].iloc[i] for i in ok})
    if len(singers) < 2:
        raise ValueError(f"need at least 2 enrolled singers with readable audio, have {len(singers)}")
    idx = {s: j for j, s in enumerate(singers)}
    songs = [enrol["song"].iloc[i] for i in ok] if "song" in enrol else None
    clf = fit_classifier([ew[i] for i in ok], [idx[enrol["singer"].iloc[i]] for i in ok], len(singers), method, seed,
                         HeadConfig(seed=seed, raw_input=reads_raw(embedder)), songs, getattr(embedder, "backend", None),
                         score_norm)
    qw = embed_table(embedder, query, cache_dir, workers, separator, auto)
    queries, top1, topk = [], 0, 0
    if decision == "track":
        qw = as_tracks(qw)
    ranked = rank_tracks(clf, qw, "mean" if decision == "track" else decision, topk_compat, seed)
    for (path, singer), w, r in zip(query[["path", "singer"]].itertuples(index=False), qw, ranked):
        item = {"path": path, "singer": singer, "predicted": []}
        if r is None:
            item["error"] = w.error or "no windows"
        else:
            ranking, mean = r
            item["predicted"] = [[singers[c], round(float(mean[c]), 6)] for c in ranking[:k]]
            item["windows"] = int(len(w.emb))
            rank = truth_rank(ranking, [idx[s] for s in singers_of(singer) if s in idx])
            top1 += rank == 0
            topk += rank is not None and rank < k
        queries.append(item)
    n = len(queries)
    return {
        "top1": top1 / n if n else 0.0, "top5": topk / n if n else 0.0, "n": n, "method": method, "decision": decision,
        "backend": embedder.name, "separation": separator.name if separator is not None else "none",
        "enrol_views": "mixture+separated" if enrol_separated is not None else "one",
        "query_backend": embedder.name,  # kept for readers of earlier results (queries had their own model once)
        "query_separation": separator.name if separator is not None else "none",
        "singers": len(singers),
        "score_norm": _norm_summary(clf),
        "n_errors": sum("error" in q for q in queries),
        "n_not_enrolled": int(sum(not any(x in idx for x in singers_of(s)) for s in query["singer"])),
        "topk_compat": topk_compat,
        "queries": queries,
    }


def _norm_summary(clf) -> str:
    """How the centroid scores were normalised: "enrolment (k=K)", "backend cohort", or "none"."""
    norm = getattr(clf, "norm", None)
    if norm is not None:
        return f"enrolment (k={norm.k})"
    backend = getattr(clf, "backend", None)
    return "backend cohort" if backend is not None and backend.cohort is not None else "none"
