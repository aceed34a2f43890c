"""Identification through the catalogue on the dev protocols (make_protocols.py output): enrol real clips, identify
held-out real clips (P1a/P1b), AI clones (P2) and clones on foreign instrumentals (P3); per decision tier, the share
of enrolled singers' queries named right, and the share of queries of singers left out of the catalogue (voices
nobody enrolled) wrongly named, beside the false-acceptance rate each tier was calibrated for. Prints a table.

    python ../shared/tools/make_protocols.py ../shared/data/singing-dev /tmp/proto
    python benchmarks/dev_identify.py /tmp/proto [--leave-out 8] [--backend voice | --checkpoint RUN]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from singerid.catalogue import Catalogue


def run(proto: str, name: str, leave_out: int, backend: str, checkpoint: str | None, far: float, seed: int = 0) -> dict:
    enrol = pd.read_csv(f"{proto}/{name}_enrol.csv")
    query = pd.read_csv(f"{proto}/{name}_query.csv")
    singers = sorted(enrol["singer"].unique())
    out_set = set(np.random.default_rng(seed).choice(singers, size=leave_out, replace=False)) if leave_out else set()
    with tempfile.TemporaryDirectory() as d:
        cat = Catalogue.create(d, backend=backend, checkpoint=checkpoint, separate="auto")
        cat.enroll(enrol[~enrol["singer"].isin(out_set)].assign(song=enrol["path"]), calibrate_after=False)
        cat_tiers = cat.calibrate(far).get("tiers") or []
        res = [(r["singer"], cat.identify(r["path"])) for _, r in query.iterrows()]
    known = [(s, r) for s, r in res if s not in out_set]
    unknown = [(s, r) for s, r in res if s in out_set]
    tiers = {t["tier"]: t for t in cat_tiers}
    row = {"protocol": name, "singers": len(singers) - len(out_set), "queries": len(known),
           "top-1 %": 100 * np.mean([r["candidates"][0]["singer"] == s for s, r in known])}
    for tier, ok in (("match", ("match",)), ("possible", ("match", "possible"))):
        row[f"right at {tier}+ %"] = 100 * np.mean([r["tier"] in ok and r["decision"] == s for s, r in known])
        row[f"unknown named at {tier}+ %"] = (100 * np.mean([r["tier"] in ok for _, r in unknown]) if unknown
                                              else float("nan"))
        row[f"{tier} FAR on enrolled %"] = 100 * tiers[tier]["far"] if tier in tiers else float("nan")
    row["left-out queries"] = len(unknown)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("proto")
    ap.add_argument("--leave-out", type=int, default=8, help="singers left out of the catalogue (unknown voices)")
    ap.add_argument("--backend", default="voice")
    ap.add_argument("--checkpoint")
    ap.add_argument("--far", type=float, default=0.05)
    ap.add_argument("--protocols", nargs="+", default=["P1a", "P1b", "P2", "P3"])
    a = ap.parse_args()
    rows = [run(a.proto, p, a.leave_out, a.backend, a.checkpoint, a.far) for p in a.protocols]
    print(pd.DataFrame(rows).round(1).T.to_string(header=False))


if __name__ == "__main__":
    main()
