"""Which value should the tiers be set on? The best singer's score alone, or the best score plus its margin over the
runner-up (`calibrate.decision_score`), compared on the dev protocols (make_protocols.py output) with the default
pretrained pipeline (nothing fitted on the dev set, so each corpus row is corpus-held-out).

Every enrolment and query track is embedded once, as the catalogue embeds it; then, for `--draws` random choices of
`--leave-out` singers left out of the catalogue (voices nobody enrolled), tiers are calibrated leave-one-out on the
remaining tracks as the catalogue calibrates them (cosine against centroids), and the queries are decided. Printed per
protocol, corpus of the queried singer and rule: % of enrolled singers' queries named right at `match` / `possible`
or better, % of never-enrolled voices' queries named there, and the share named right when the threshold is set on
the never-enrolled queries themselves (the rule's discrimination, without calibration error).

    python benchmarks/dev_decision.py /tmp/proto [--protocols P1a P1b P2] [--draws 20] [--cache /tmp/dec]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from singerid.audio import load_audio
from singerid.catalogue import Catalogue
from singerid.catalogue.calibrate import BEST, BEST_MARGIN, TIERS, decision_score, threshold_at
from singerid.voiced import track_audio


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def embed(proto: str, name: str, cache: Path) -> dict:
    """→ {"E": enrolled track embeddings [M, D] (as scored), "EQ": as queried, "ES": singers, "Q": queries, "QS"}"""
    f = cache / f"{name}.npz"
    if not f.exists():
        enrol, query = pd.read_csv(f"{proto}/{name}_enrol.csv"), pd.read_csv(f"{proto}/{name}_query.csv")
        with tempfile.TemporaryDirectory() as d:
            cat = Catalogue.create(d, backend="voice", separate="auto")
            cat.enroll(enrol.assign(song=enrol["path"]), calibrate_after=False, progress=False)
            tracks, views = cat.store.track_vectors("real"), cat.store.query_vectors("real")
            q = [cat.embedder.embed_track(track_audio(load_audio(p), cat.embedder.window_seconds, None,
                                                      cat.separator).voiced) for p in tqdm(query["path"], desc=name)]
        np.savez(f, E=np.concatenate([t[3] for t in tracks]),
                 EQ=np.concatenate([views.get(t[0], t[3]) for t in tracks]), ES=np.array([t[1] for t in tracks]),
                 Q=np.stack(q), QS=query["singer"].to_numpy(str))
    z = np.load(f)
    return {k: z[k] for k in z.files}


def draw(z: dict, out: set, rule: str) -> list[tuple]:
    """One catalogue without the singers `out` → per query (singer, enrolled?, value, ranked right?, tier)."""
    keep = ~np.isin(z["ES"], list(out))
    emb, views, singers = l2(z["E"][keep]), l2(z["EQ"][keep]), z["ES"][keep]
    names = sorted(set(singers))
    lab = np.array([names.index(s) for s in singers])
    sums = np.zeros((len(names), emb.shape[1]))
    np.add.at(sums, lab, emb)
    cents, counts = l2(sums), np.bincount(lab)
    impostor = []
    for i in np.flatnonzero(counts[lab] >= 2):  # leave-one-out, as `calibrate` does on cosine scores
        c = cents.copy()
        c[lab[i]] = l2(sums[lab[i]] - emb[i])
        impostor.append(decision_score(np.delete(c @ views[i], lab[i]), rule))
    thr = {t.name: threshold_at(np.array(impostor), t.far) for t in TIERS}
    rows = []
    for q, s in zip(l2(z["Q"].reshape(len(z["Q"]), -1)), z["QS"]):
        score = cents @ q
        v = decision_score(score, rule)
        tier = next((t for t in thr if v >= thr[t]), "unknown")
        rows.append((s, s in names, v, s in names and names[int(np.argmax(score))] == s, tier))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("proto")
    ap.add_argument("--protocols", nargs="+", default=["P1a", "P1b", "P2"])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--leave-out", type=int, default=8)
    ap.add_argument("--cache", default=None, help="folder for the embeddings (default: a temporary one)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/singing-dev/tracks.csv"))
    a = ap.parse_args()
    t = pd.read_csv(a.data)
    corpus = dict(zip(t["singer"], t["corpus"]))
    cache = Path(a.cache or tempfile.mkdtemp())
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for name in a.protocols:
        z = embed(a.proto, name, cache)
        singers = sorted(set(z["ES"]))
        for rule in (BEST, BEST_MARGIN):
            left_out = [set(np.random.default_rng(seed).choice(singers, a.leave_out, replace=False))
                        for seed in range(a.draws)]
            rows = [(corpus.get(r[0], "?"), *r[1:]) for out in left_out for r in draw(z, out, rule)]
            df = pd.DataFrame(rows, columns=["corpus", "enrolled", "value", "right", "tier"])
            for c, g in df.groupby("corpus"):
                known, unknown = g[g.enrolled], g[~g.enrolled]
                r = {"protocol": name, "corpus": c, "rule": rule}
                for tier, ok in (("match", ["match"]), ("possible", ["match", "possible"])):
                    r[f"right@{tier}"] = 100 * np.mean(known.right & known.tier.isin(ok))
                    r[f"unknown@{tier}"] = 100 * np.mean(unknown.tier.isin(ok))
                for far in (0.01, 0.1):  # threshold on the never-enrolled queries themselves
                    thr = threshold_at(unknown.value.to_numpy(), far)
                    r[f"right@oracle{far:g}"] = 100 * np.mean(known.right & (known.value >= thr))
                out.append(r)
    print(pd.DataFrame(out).set_index(["protocol", "corpus", "rule"]).round(1).to_string())


if __name__ == "__main__":
    main()
