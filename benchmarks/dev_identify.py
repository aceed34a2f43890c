"""Identification through the catalogue on the dev protocols (make_protocols.py output): enrol real clips, identify
held-out real clips (P1a/P1b), AI clones (P2) and clones on foreign instrumentals (P3); per decision tier, the share
of enrolled singers' queries named right, and the share of queries of singers left out of the catalogue (voices
nobody enrolled) wrongly named, beside the false-acceptance rate each tier was calibrated for. Prints a table.

    python ../shared/tools/make_protocols.py ../shared/data/singing-dev /tmp/proto
    python benchmarks/dev_identify.py /tmp/proto [--leave-out 8] [--backend voice | --checkpoint RUN]
        [--score-norm none|enrolment] [--by-corpus]

`--by-corpus` splits each protocol's rows by the corpus of the queried singer (GTSinger, NUS-48E): nothing is fitted
on the dev set for the pretrained backend, so each corpus's rows are corpus-held-out figures.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from singerid.catalogue import Catalogue


def run(proto: str, name: str, leave_out: int, backend: str, checkpoint: str | None, far: float, seed: int = 0,
        score_norm: str = "none", corpus: dict | None = None) -> list[dict]:
    enrol = pd.read_csv(f"{proto}/{name}_enrol.csv")
    query = pd.read_csv(f"{proto}/{name}_query.csv")
    singers = sorted(enrol["singer"].unique())
    out_set = set(np.random.default_rng(seed).choice(singers, size=leave_out, replace=False)) if leave_out else set()
    with tempfile.TemporaryDirectory() as d:
        cat = Catalogue.create(d, backend=backend, checkpoint=checkpoint, separate="auto", score_norm=score_norm)
        cat.enroll(enrol[~enrol["singer"].isin(out_set)].assign(song=enrol["path"]), calibrate_after=False)
        cat_tiers = cat.calibrate(far).get("tiers") or []
        res = [(r["singer"], cat.identify(r["path"])) for _, r in query.iterrows()]
    tiers = {t["tier"]: t for t in cat_tiers}
    groups = {"all": res} if corpus is None else {}
    for s, r in res if corpus is not None else []:
        groups.setdefault(corpus.get(s, "?"), []).append((s, r))
    return [row(f"{name} {g}", rows, out_set, tiers, len(singers) - len(out_set)) for g, rows in sorted(groups.items())]


def row(label: str, res: list, out_set: set, tiers: dict, n_singers: int) -> dict:
    known = [(s, r) for s, r in res if s not in out_set]
    unknown = [(s, r) for s, r in res if s in out_set]
    out = {"protocol": label, "singers": n_singers, "queries": len(known),
           "top-1 %": 100 * np.mean([r["candidates"][0]["singer"] == s for s, r in known]) if known else float("nan")}
    for tier, ok in (("match", ("match",)), ("possible", ("match", "possible"))):
        out[f"right at {tier}+ %"] = (100 * np.mean([r["tier"] in ok and r["decision"] == s for s, r in known])
                                      if known else float("nan"))
        out[f"unknown named at {tier}+ %"] = (100 * np.mean([r["tier"] in ok for _, r in unknown]) if unknown
                                              else float("nan"))
        out[f"{tier} FAR on enrolled %"] = 100 * tiers[tier]["far"] if tier in tiers else float("nan")
    out["left-out queries"] = len(unknown)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("proto")
    ap.add_argument("--leave-out", type=int, default=8, help="singers left out of the catalogue (unknown voices)")
    ap.add_argument("--backend", default="voice")
    ap.add_argument("--checkpoint")
    ap.add_argument("--far", type=float, default=0.05)
    ap.add_argument("--protocols", nargs="+", default=["P1a", "P1b", "P2", "P3"])
    ap.add_argument("--score-norm", choices=["none", "enrolment"], default="none")
    ap.add_argument("--by-corpus", action="store_true", help="rows per corpus of the queried singer")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/singing-dev/tracks.csv"))
    a = ap.parse_args()
    corpus = None
    if a.by_corpus:
        t = pd.read_csv(a.data)
        corpus = dict(zip(t["singer"], t["corpus"]))
    rows = [r for p in a.protocols
            for r in run(a.proto, p, a.leave_out, a.backend, a.checkpoint, a.far, score_norm=a.score_norm, corpus=corpus)]
    print(pd.DataFrame(rows).round(1).T.to_string(header=False))


if __name__ == "__main__":
    main()
