"""Scoring-backend choices on leave-singers-out folds of the dev set (issue 9): which views the WCCN is fitted on, its
shrinkage, LDA, and AS-norm's top-k, all on the pretrained `voice` encoder with Spleeter in front.

The embeddings are computed once: every protocol file (as `benchmarks/dev_folds.py` scores them), every singing row of
the dev table clean, and every row remixed onto ../shared/data/instrumentals-train and separated again
(`singerid.train.recipe.remixed_embeddings`, one seeded draw for the whole table; `fit-scoring` draws per fold).
For fold k a backend is fitted on the rows of the other folds' singers only (a clone goes with its target singer and
is dropped when its source singer is held out), then the fold's queries are scored by nearest centroid of the
track embeddings against the protocol's whole enrolment. Pooled top-1 % over the 4 folds.

    python benchmarks/dev_backend_ablation.py --proto /tmp/proto
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dev_folds import PROTOCOLS, ROOT, folds_of

VARIANTS = [  # name, views, kind, shrink, asnorm_k
    ("cosine (no backend)", None, None, 0.0, 0),
    ("WCCN on clean rows", ("clean",), "wccn", 0.3, 0),
    ("WCCN on clean rows, shrink 0.1", ("clean",), "wccn", 0.1, 0),
    ("WCCN on clean rows, shrink 0.5", ("clean",), "wccn", 0.5, 0),
    ("WCCN on clean + remixed rows", ("clean", "remix"), "wccn", 0.3, 0),
    ("LDA on clean + remixed rows", ("clean", "remix"), "lda", 0.3, 0),
    ("AS-norm k=10 alone (cohort: training singers)", ("clean", "remix"), "center", 0.0, 10),
    ("WCCN on clean rows + AS-norm k=10", ("clean",), "wccn", 0.3, 10),
    ("WCCN on clean + remixed rows + AS-norm k=5", ("clean", "remix"), "wccn", 0.3, 5),
    ("**WCCN on clean + remixed rows + AS-norm k=10** (default)", ("clean", "remix"), "wccn", 0.3, 10),
    ("WCCN on clean + remixed rows + AS-norm k=20", ("clean", "remix"), "wccn", 0.3, 20),
    ("WCCN on clean + remixed rows + AS-norm, all cohort", ("clean", "remix"), "wccn", 0.3, 1000),
]


def embed_views(proto: Path, data: Path, instrumentals: Path) -> dict:
    """→ {"proto": {f"{P}_{part}": (labels, track embeddings [N, D])}, "rows": table, "clean"/"remix": per row
    (windows [n, D], track [D]) or None}. Protocol files and clean rows come from the embedding cache."""
    from singerid.audio import load_audio
    from singerid.data.manifest import load_tracks
    from singerid.embed import load_embedder
    from singerid.eval.cache import embed_files
    from singerid.separation import load_separator
    from singerid.train.recipe import backend_rows, remixed_embeddings
    from singerid.weights import home

    emb = load_embedder("voice")
    sep = load_separator("spleeter", "cpu", home() / "separated")
    cache = str(home() / "embeddings")
    views: dict = {"proto": {}}
    for p in PROTOCOLS:
        for part in ("enrol", "query"):
            t = pd.read_csv(proto / f"{p}_{part}.csv")
            ws = embed_files(emb, list(t["path"]), cache, separator=sep, progress=False)
            views["proto"][f"{p}_{part}"] = (np.array(t["singer"]), np.stack([w.track for w in ws]))
    rows = backend_rows(load_tracks(data), clones=True)
    views["rows"] = rows
    views["clean"] = [(w.emb, w.track) if w.error is None else None
                      for w in embed_files(emb, list(rows["path"]), cache, progress=False, vad=None)]
    insts = [load_audio(str(instrumentals.parent / p)) for p in pd.read_csv(instrumentals)["path"]]
    views["remix"], = remixed_embeddings(emb, list(rows["path"]), insts, [sep])
    return views


def fold_scores(views: dict, held: list[str], variant) -> dict[str, list[bool]]:
    from singerid.eval.heads import CentroidClassifier
    from singerid.models.backend import BackendConfig, ScoringBackend

    _, names, kind, shrink, k = variant
    rows = views["rows"]
    keep = ~rows["singer"].isin(held) & ~rows["source_singer"].isin(held)
    backend = None
    if names is not None:
        x, y = [], []
        for name in names:
            for v, singer, ok in zip(views[name], rows["singer"], keep):
                if ok and v is not None:
                    x += [v[0], v[1][None]]
                    y += [singer] * (len(v[0]) + 1)
        backend = ScoringBackend.fit(np.concatenate(x), np.array(y), BackendConfig(kind=kind, shrink=shrink, asnorm_k=k))
    hits = {}
    for p in PROTOCOLS:
        (el, e), (ql, q) = views["proto"][f"{p}_enrol"], views["proto"][f"{p}_query"]
        if backend is not None:
            e, q = backend.apply(e), backend.apply(q)
        singers = sorted(set(el))
        clf = CentroidClassifier.fit(e, np.array([singers.index(s) for s in el]), len(singers), backend)
        pred = np.array(singers)[clf.scores(q).argmax(axis=1)]
        mask = np.isin(ql, held)
        hits[p] = list(pred[mask] == ql[mask])
    return hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "singing-dev" / "tracks.csv"))
    ap.add_argument("--instrumentals", default=str(ROOT / "instrumentals-train" / "tracks.csv"))
    ap.add_argument("--proto", required=True, help="folder written by make_protocols.py")
    ap.add_argument("--folds", type=int, default=4)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from singerid import cpu
    from singerid.data.manifest import load_tracks

    cpu.configure()
    views = embed_views(Path(a.proto), Path(a.data), Path(a.instrumentals))
    folds = folds_of(load_tracks(a.data), a.folds)
    print("| scoring on the pretrained `voice` embeddings | " + " | ".join(PROTOCOLS) + " |")
    print("|---" * (len(PROTOCOLS) + 1) + "|")
    for variant in VARIANTS:
        pooled = {p: [] for p in PROTOCOLS}
        for held in folds:
            for p, h in fold_scores(views, held, variant).items():
                pooled[p] += h
        print(f"| {variant[0]} | " + " | ".join(f"{100 * np.mean(pooled[p]):.1f}" for p in PROTOCOLS) + " |", flush=True)


if __name__ == "__main__":
    main()
