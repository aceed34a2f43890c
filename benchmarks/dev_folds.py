"""Leave-corpus-out and leave-singers-out folds on the dev set: every figure comes from singers the model did not
train on, and (`--split corpus`, the default and the primary figure) from a corpus it did not train on.

`--split corpus`: one fold per corpus (GTSinger, NUS-48E): the model or backend is trained or fitted on the other
corpus only, and scored on this corpus's real voices (P1a, P1b) and, for NUS-48E, its clones (P2) and mixed clones
(P3). A gain here is one that does not come from matching the test corpus's recordings. `--split singers --folds K`:
the 32 real singers are dealt into K folds (stratified by corpus, seeded), so training and test share both corpora
(the second column of docs/results.md). For fold k, a training table holds every
row of the other singers (a clone goes with its target singer and is dropped when its source singer is held out; the
dev instrumentals, which P3 mixes with, are left out: training remixes onto ../shared/data/instrumentals-train).
Each system is then scored on the standard protocols (make_protocols.py): the enrolment list as it is (all 32
singers: the closed set of the protocol), the queries of fold k's held-out singers only. Pooled over the folds, every
query is scored once, by a model that never heard its singer.

Systems: `voice` (the pretrained encoder), `scoring` (pretrained + the scoring backend fitted on the fold's training
table: WCCN on its tracks and their remixes onto --instrumentals separated again, then AS-norm against the
training singers; `scoringLABEL=ARGS` passes ARGS to that fit-scoring, e.g. `scoring-plain=--asnorm-k 0
--instrumentals none`), `adapted` (`singerid train --config voice --mode vocal` on the fold's table: the recipe), and the peer
(Resemblyzer's own embed_utterance, from benchmarks/peer_resemblyzer.py's --json), plus any `--extra NAME=ARGS`.
`NAME+refit` (after NAME) keeps NAME's encoder and refits the scoring backend on it (`singerid fit-scoring
--checkpoint`: its own embeddings of the training table and of its remixes; a distilled student reads them raw and
through Spleeter, as its catalogue does, or raw only with `NAME+refitLABEL=--enrol-views mixture`);
`NAME+refitLABEL=ARGS` passes ARGS to that fit-scoring (e.g. `student10+refit3=--remixes 3`).
Every system is scored with Spleeter in front, except `NAME@none` (e.g. `voice@none`) and checkpoints that read raw
mixtures (a distilled student, `--mode distill`), which are scored on the raw audio; such a student enrols each track
read raw and through Spleeter, the two averaged (`singerid evaluate`'s default `--enrol-views`), or raw only with
`NAME@mixture`.
`NAME=--average A B ...` averages the weights of systems A, B, ... already run on the fold (`singerid average`: a model
soup, e.g. one recipe trained with two seeds).

`--paired [RESULTS_JSON:]NAME` adds each system's per-query comparison with NAME on each scored protocol (McNemar;
a bootstrap interval that resamples held-out singers with all their queries); `--by-corpus` pools each protocol per
corpus of the queried singers (the students' real-voice loss is largest on GTSinger's, see docs/results.md).
`--protocols P3` (or any subset) scores only those. A run folder that already holds a finished checkpoint
(`config.json`, or a training run's `latest.json`) is scored as it is, so checkpoints of another `--out` can be
linked in and scored on another protocol folder.

    python benchmarks/dev_folds.py --proto /tmp/proto --out /tmp/folds [--peer /tmp/peer.json] [--systems voice scoring adapted]
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
PROTOCOLS = ("P1a", "P1b", "P2", "P3")


def folds_of(tracks: pd.DataFrame, k: int, seed: int = 0) -> list[list[str]]:
    """Real singers dealt round-robin into k folds, corpus by corpus, in a seeded order."""
    real = tracks[(tracks["kind"] == "real") & tracks["stem"].isin(["vocals", "speech"])]
    rng = np.random.default_rng(seed)
    out: list[list[str]] = [[] for _ in range(k)]
    i = 0
    for _, g in sorted(real.groupby(real.get("corpus", pd.Series("", index=real.index)).fillna("")), key=lambda kv: kv[0]):
        for s in rng.permutation(sorted(g["singer"].unique())):
            out[i % k].append(str(s))
            i += 1
    return out


def corpus_folds(tracks: pd.DataFrame) -> list[list[str]]:
    """One fold per corpus of the real singers (sorted by name): its singers are held out together."""
    real = tracks[(tracks["kind"] == "real") & tracks["stem"].isin(["vocals", "speech"])]
    return [sorted(map(str, g["singer"].unique())) for _, g in sorted(real.groupby("corpus"), key=lambda kv: kv[0])]


def training_table(tracks: pd.DataFrame, held: list[str], out: Path) -> Path:
    keep = ~tracks["singer"].isin(held) & (tracks["stem"] != "instrumental")
    if "source_singer" in tracks:
        keep &= ~tracks["source_singer"].isin(held)
    path = out / "train.csv"
    tracks[keep].drop(columns=["vocal_segs"]).to_csv(path, index=False)
    return path


def score_norm(system: str):
    """`NAME#none` → no score normalisation, `NAME#K` → the enrolment's own with top-K cohorts (`#0`: centring
    only), else the library's default."""
    from singerid.models.selfnorm import DEFAULT_SCORE_NORM, SelfNormConfig

    _, _, how = system.partition("#")
    if not how:
        return SelfNormConfig.named(DEFAULT_SCORE_NORM)
    return None if how == "none" else SelfNormConfig(k=int(how))


def score(embedder, proto: Path, held: list[str], separator, cache: str, enrol_separated=None, protocols=PROTOCOLS,
          norm="default") -> dict[str, dict]:
    from singerid.eval.evaluate import evaluate

    res = {}
    for p in protocols:
        enrol, query = pd.read_csv(proto / f"{p}_enrol.csv"), pd.read_csv(proto / f"{p}_query.csv")
        query = query[query["singer"].isin(held)]
        if query.empty:
            continue
        r = evaluate(enrol, query, embedder, "centroid", "track", cache, workers=2, separator=separator,
                     enrol_separated=enrol_separated,
                     score_norm=score_norm("") if norm == "default" else norm)
        res[p] = {"top1": r["top1"], "top5": r["top5"], "n": r["n"],
                  "hits": [q["predicted"][0][0] == q["singer"] if q["predicted"] else False for q in r["queries"]]}
    return res


def score_system(system: str, fold: Path, train_csv: Path, k: int, extra: dict, a, sep, cache: str,
                 held: list[str]) -> dict[str, dict]:
    """Run (train or fit when needed) and score one system on fold k."""
    from singerid.cli import main as singerid
    from singerid.embed import load_embedder

    def cli(argv: list[str]) -> None:
        if singerid(argv):
            raise SystemExit(f"singerid {argv[0]} failed on fold {k} ({system}): see its message above")

    norm = score_norm(system)
    base, _, how = system.partition("#")[0].partition("@")  # NAME@none: without separation; NAME@mixture: one view
    if base == "voice":
        emb = load_embedder("voice")
    elif base.startswith("scoring"):  # scoringLABEL=ARGS: fit-scoring with ARGS (e.g. '--asnorm-k 0 --instrumentals none')
        args = shlex.split(extra.get(base, ""))
        insts = [] if "--instrumentals" in args else ["--instrumentals", a.instrumentals]  # an append option
        cli(["fit-scoring", "--manifest", str(train_csv), "--out", str(fold / base), *insts, *args])
        emb = load_embedder(checkpoint=str(fold / base))
    elif "+refit" in base:  # NAME+refit[LABEL]: NAME's encoder, a backend refitted on its own views (ARGS: fit-scoring's)
        cli(["fit-scoring", "--checkpoint", str(fold / base.partition("+refit")[0]), "--manifest", str(train_csv),
             "--out", str(fold / base), "--instrumentals", a.instrumentals] + shlex.split(extra.get(system, "")))
        emb = load_embedder(checkpoint=str(fold / base))
    else:
        run, args = fold / base, extra.get(system, extra.get(base, ""))
        if args.startswith("--average"):  # a model soup of systems already run on this fold
            cli(["average", *(str(fold / n) for n in shlex.split(args)[1:]), "--out", str(run)])
        elif not ((run / "latest.json").exists() or (run / "config.json").exists()):  # else: scored as it is
            cli(["train", "--manifest", str(train_csv), "--config", "voice", "--mode", "vocal", "--out", str(run),
                 "--instrumentals", a.instrumentals]
                + shlex.split(args.replace("{fold}", str(k))))
        emb = load_embedder(checkpoint=str(run))
    raw = how == "none" or emb.reads_mixtures  # a distilled student reads the raw mixtures
    also = sep if emb.reads_mixtures and how != "mixture" else None  # its enrolment: raw and separated, averaged
    return score(emb, Path(a.proto), held, None if raw else sep, cache, enrol_separated=also, protocols=a.protocols,
                 norm=norm)


def peer_scores(peer: dict, held: list[str]) -> dict[str, dict]:
    res = {}
    for p in PROTOCOLS:
        qs = [q for q in peer[p]["queries"] if q["singer"] in held]
        if not qs:
            continue
        hits = [q["top5"][0] == q["singer"] for q in qs]
        res[p] = {"top1": float(np.mean(hits)), "top5": float(np.mean([q["singer"] in q["top5"] for q in qs])),
                  "n": len(qs), "hits": hits}
    return res


def corpus_table(results: dict[str, dict], names: list[str]) -> str:
    """Leave-corpus-out: a column per (protocol, held-out corpus) scored, top-1 / top-5 % (queries)."""
    cols = [(p, str(k)) for p in PROTOCOLS for k in range(len(names))
            if any(p in v.get(str(k), {}) for v in results.values())]
    lines = ["| system | " + " | ".join(f"{p} {names[int(k)]}" for p, k in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for system, folds in results.items():
        cells = [f"{100 * r['top1']:.1f} / {100 * r['top5']:.1f} ({r['n']})" if (r := folds.get(k, {}).get(p)) else "–"
                 for p, k in cols]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: dict) -> str:
    protocols = [p for p in PROTOCOLS if any(p in f for folds in results.values() for f in folds)]
    lines = ["| system | " + " | ".join(f"{p} top-1 (mean ± std over folds; pooled)" for p in protocols) + " |",
             "|---" * (len(protocols) + 1) + "|"]
    for system, folds in results.items():
        cells = []
        for p in protocols:
            per = [100 * f[p]["top1"] for f in folds if p in f and f[p]["n"]]
            pooled = 100 * np.mean([h for f in folds if p in f for h in f[p]["hits"]])
            cells.append(f"{np.mean(per):.1f} ± {np.std(per):.1f}; {pooled:.1f}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(results: dict, reference: dict, singers: dict[str, list[str]] | None = None, protocol: str = "P3",
           draws: int = 10_000) -> str:
    """Each system's per-query answers against a reference system's (same queries, pooled over the folds both ran):
    queries only the system gets / only the reference gets, the exact two-sided McNemar p, and a bootstrap 95 %
    interval of the pooled top-1 difference. With `singers` (fold → each query's singer, in the queries' order) the
    bootstrap resamples held-out singers with all their queries (a singer's clones are not independent draws);
    without, single queries."""
    from math import comb

    lines = [f"| system vs reference, {protocol} | hits | only system / only reference | McNemar p | difference "
             f"[95 %, {'singers' if singers else 'queries'} resampled] |", "|---|---|---|---|---|"]
    for system, folds in results.items():
        common = [k for k in sorted(set(folds) & set(reference)) if protocol in folds[k] and protocol in reference[k]]
        if not common:
            continue
        a = np.concatenate([folds[k][protocol]["hits"] for k in common]).astype(int)
        r = np.concatenate([reference[k][protocol]["hits"] for k in common]).astype(int)
        b, c = int((a > r).sum()), int((a < r).sum())
        p = min(1.0, 2 * sum(comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c)) if b + c else 1.0
        rng = np.random.default_rng(0)
        if singers:
            who = np.concatenate([singers[k] for k in common])
            groups = [np.flatnonzero(who == s) for s in np.unique(who)]
            picks = rng.integers(0, len(groups), (draws, len(groups)))
            diff_sum = np.array([float((a[g] - r[g]).sum()) for g in groups])
            size = np.array([len(g) for g in groups], float)
            d = 100 * diff_sum[picks].sum(1) / size[picks].sum(1)
        else:
            idx = rng.integers(0, len(a), (draws, len(a)))
            d = 100 * (a[idx] - r[idx]).mean(1)
        lo, hi = np.percentile(d, [2.5, 97.5])
        lines.append(f"| {system} | {a.sum()} vs {r.sum()} of {len(a)} | {b} / {c} | {p:.2f} | "
                     f"{100 * (a.mean() - r.mean()):+.1f} [{lo:+.1f}, {hi:+.1f}] |")
    return "\n".join(lines)


def by_corpus(results: dict, who: dict[str, list[str]], corpus: dict[str, str], protocol: str) -> str:
    """Pooled top-1 per corpus of the queried singers (e.g. GTSinger against NUS-48E), from the stored hits."""
    names = sorted({corpus.get(s, "?") for v in who.values() for s in v})
    lines = [f"| system, {protocol} by corpus | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for system, folds in results.items():
        common = [k for k in sorted(set(folds) & set(who)) if protocol in folds[k]]
        hits = np.concatenate([folds[k][protocol]["hits"] for k in common]).astype(float)
        of = np.array([corpus.get(s, "?") for k in common for s in who[k]])
        lines.append(f"| {system} | " + " | ".join(f"{100 * hits[of == c].mean():.1f} ({(of == c).sum()})"
                                                   if (of == c).any() else "–" for c in names) + " |")
    return "\n".join(lines)


def query_singers(proto: Path, folds: list[list[str]], results: dict, protocol: str = "P3") -> dict[str, list[str]]:
    """Fold → the singer of each of its scored queries, in `score`'s order (the protocol's query list, held-out
    singers only); folds whose scored count differs (an unreadable query dropped) are left out."""
    query = pd.read_csv(proto / f"{protocol}_query.csv")
    out = {}
    for k, held in enumerate(folds):
        who = list(query.loc[query["singer"].isin(held), "singer"])
        if all(len(v[str(k)][protocol]["hits"]) == len(who) for v in results.values() if protocol in v.get(str(k), {})):
            out[str(k)] = who
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "singing-dev" / "tracks.csv"))
    ap.add_argument("--instrumentals", default=str(ROOT / "instrumentals-train" / "tracks.csv"))
    ap.add_argument("--proto", required=True, help="folder written by make_protocols.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", choices=["corpus", "singers"], default="corpus",
                    help="corpus: train on one corpus, test on the other (the primary figure); singers: --folds K "
                         "leave-singers-out folds within both corpora")
    ap.add_argument("--folds", type=int, default=4, help="with --split singers")
    ap.add_argument("--only", type=int, nargs="*", help="run these folds only")
    ap.add_argument("--systems", nargs="*", default=["voice", "scoring", "adapted"],
                    help="systems to (re)score; none: only add the peer and print the table")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=ARGS",
                    help="another trained system: extra `singerid train` arguments, e.g. 'lr3=--lr 0.003'; {fold} is "
                         "replaced by the fold's number (a per-fold teacher: '--teacher runs/fold{fold}/scoring')")
    ap.add_argument("--peer", help="JSON from benchmarks/peer_resemblyzer.py --json")
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS,
                    help="score these protocols only (e.g. P3)")
    ap.add_argument("--paired", metavar="[RESULTS_JSON:]NAME",
                    help="also compare every system's per-query answers with this one's, per protocol (e.g. "
                         "/tmp/folds5/results.json:scoring, the teacher with Spleeter)")
    ap.add_argument("--by-corpus", action="store_true",
                    help="also pool each protocol's top-1 per corpus of the queried singers (GTSinger, NUS-48E)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from singerid import cpu
    from singerid.data.manifest import load_tracks
    from singerid.separation import load_separator
    from singerid.weights import home

    cpu.configure()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tracks = load_tracks(a.data)
    folds = corpus_folds(tracks) if a.split == "corpus" else folds_of(tracks, a.folds)
    names = [str(tracks.loc[tracks["singer"] == f[0], "corpus"].iloc[0]) for f in folds]
    sep = load_separator("spleeter", "cpu", home() / "separated")
    cache = str(home() / "embeddings")
    extra = dict(e.split("=", 1) for e in a.extra)
    results_file = out / "results.json"
    results: dict = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for k, held in enumerate(folds):
        if a.only and k not in a.only:
            continue
        fold = out / f"fold{k}"
        fold.mkdir(exist_ok=True)
        train_csv = training_table(tracks, held, fold)
        print(f"fold {k} ({names[k] if a.split == 'corpus' else 'singers'}): {len(held)} held-out singers: "
              f"{', '.join(held)}", flush=True)
        for system in a.systems + list(extra):
            t0 = time.time()
            r = score_system(system, fold, train_csv, k, extra, a, sep, cache, held)
            results.setdefault(system, {})[str(k)] = r
            results_file.write_text(json.dumps(results))
            print(f"  {system:10s} " + "  ".join(f"{p} {100 * r[p]['top1']:5.1f}" for p in a.protocols if p in r)
                  + f"  ({time.time() - t0:.0f} s)", flush=True)
        if a.peer and Path(a.peer).is_file():
            results.setdefault("resemblyzer", {})[str(k)] = peer_scores(json.loads(Path(a.peer).read_text()), held)
            results_file.write_text(json.dumps(results))
    done = {s: [f for _, f in sorted(v.items())] for s, v in results.items()}
    md = corpus_table(results, names) if a.split == "corpus" else table(done)
    if a.paired:
        path, _, name = a.paired.rpartition(":")
        ref = json.loads(Path(path).read_text()) if path else results
        for p in a.protocols:  # those the reference was scored on
            if any(p in f for f in ref[name].values()):
                scored = {s: v for s, v in results.items() if any(p in f for f in v.values())}
                who = query_singers(Path(a.proto), folds, {**scored, name: ref[name]}, p)
                md += "\n\n" + paired(scored, ref[name], who if len(who) == len(folds) else None, p)
    if a.by_corpus:
        corpus = dict(zip(tracks["singer"], tracks["corpus"]))
        for p in a.protocols:
            scored = {s: v for s, v in results.items() if any(p in f for f in v.values())}
            md += "\n\n" + by_corpus(scored, query_singers(Path(a.proto), folds, scored, p), corpus, p)
    (out / "table.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
