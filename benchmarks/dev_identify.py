"""Identification through the catalogue on the dev protocols (make_protocols.py output): enrol real clips, identify
AI clones (P2) and clones on foreign instrumentals (P3); and the false-acceptance rate of "unknown" for singers left
out of the catalogue. Prints a table.

    python ../shared/tools/make_protocols.py ../shared/data/singing-dev /tmp/proto
    python benchmarks/dev_identify.py /tmp/proto [--leave-out 8] [--backend voice] [--far 0.05]
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
        cat.calibrate(far)
        res = [(r["singer"], cat.identify(r["path"])) for _, r in query.iterrows()]
    known = [(s, r) for s, r in res if s not in out_set]
    unknown = [(s, r) for s, r in res if s in out_set]
    return {
        "protocol": name, "catalogue singers": len(singers) - len(out_set), "queries": len(known),
        "top-1 %": 100 * np.mean([r["candidates"][0]["singer"] == s for s, r in known]),
        "top-5 %": 100 * np.mean([s in [c["singer"] for c in r["candidates"]] for s, r in known]),
        "accepted & right %": 100 * np.mean([r["decision"] == s for s, r in known]),
        "left-out queries": len(unknown),
        "FAR (left-out accepted) %": 100 * np.mean([r["decision"] != "unknown" for _, r in unknown]) if unknown else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("proto")
    ap.add_argument("--leave-out", type=int, default=8, help="singers left out of the catalogue (unknown voices)")
    ap.add_argument("--backend", default="voice")
    ap.add_argument("--checkpoint")
    ap.add_argument("--far", type=float, default=0.05)
    ap.add_argument("--protocols", nargs="+", default=["P2", "P3"])
    a = ap.parse_args()
    rows = [run(a.proto, p, a.leave_out, a.backend, a.checkpoint, a.far) for p in a.protocols]
    print(pd.DataFrame(rows).round(1).to_string(index=False))


if __name__ == "__main__":
    main()
