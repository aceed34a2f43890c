"""The peer on the dev protocols: Resemblyzer's own whole-utterance embedding (preprocess_wav + embed_utterance),
nearest centroid, top-1 / top-5. Runs in a scratch venv with resemblyzer (never a dependency of singerid) and does not
import singerid.

    python -m venv /tmp/rvenv && /tmp/rvenv/bin/pip install torch==2.13.0 resemblyzer "setuptools<70"
    python ../shared/tools/make_protocols.py ../shared/data/singing-dev /tmp/proto
    /tmp/rvenv/bin/python benchmarks/peer_resemblyzer.py /tmp/proto [--protocols P1a P1b P2 P3] [--json out.json]

"""
import argparse
import csv
import json
import sys

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("proto")
    ap.add_argument("--protocols", nargs="+", default=["P1a", "P1b", "P2", "P3"])
    ap.add_argument("--json", help="write per-protocol figures and per-query top-5 here")
    a = ap.parse_args()
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav

    torch.set_num_threads(2)
    enc = VoiceEncoder("cpu", verbose=False)
    cache: dict[str, np.ndarray] = {}

    def emb(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = enc.embed_utterance(preprocess_wav(path))
        return cache[path]

    out = {}
    for p in a.protocols:
        rows = {part: list(csv.DictReader(open(f"{a.proto}/{p}_{part}.csv"))) for part in ("enrol", "query")}
        singers = sorted({r["singer"] for r in rows["enrol"]})
        cents = np.stack([np.mean([emb(r["path"]) for r in rows["enrol"] if r["singer"] == s], axis=0) for s in singers])
        cents /= np.linalg.norm(cents, axis=1, keepdims=True)
        queries = []
        for r in rows["query"]:
            order = np.argsort(-(cents @ emb(r["path"])))[:5]
            queries.append({"path": r["path"], "singer": r["singer"], "top5": [singers[i] for i in order]})
        top1 = np.mean([q["top5"][0] == q["singer"] for q in queries])
        top5 = np.mean([q["singer"] in q["top5"] for q in queries])
        out[p] = {"top1": float(top1), "top5": float(top5), "n": len(queries), "queries": queries}
        print(f"{p}: top-1 {100 * top1:.1f} %, top-5 {100 * top5:.1f} % on {len(queries)} queries, {len(singers)} singers",
              flush=True)
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
