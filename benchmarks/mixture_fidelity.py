"""How near each system's reading of a mixed query lies to the teacher's reading of the same voice alone, per corpus.

For every held-out query of benchmarks/mixed_protocols.py's folder (a clean song or clone of make_protocols.py's, on
a held-out instrumental), the cosine between a system's track embedding of the mixture and the fold teacher's track
embedding of the clean source (read through Spleeter, as the teacher's pipeline reads everything), after the
teacher's scoring backend (centring + WCCN: the space identification scores in; "raw" without it); mean per corpus of
the queried singer. Beside it, how crowded each corpus is: the mean cosine of a held-out singer's clean reading to the
nearest *other* held-out singer's (the teacher's, same space). A system loses accuracy where its fidelity falls short
of the distance between neighbouring voices, so the same fidelity costs more in a crowded corpus. Embeddings come from
the evaluation cache (`dev_folds.py` fills it).

    python benchmarks/mixture_fidelity.py --proto /tmp/proto --mixed /tmp/proto_mixed \\
        --teacher /tmp/mixed/fold{fold}/teacher --student soup16x2=/tmp/dfolds/fold{fold}/soup16x2 --protocols P1a P3

"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_folds import ROOT, folds_of  # noqa: E402

SOURCE = {"P1a": "P1a", "P1b": "P1b", "P3": "P2"}  # mixed_protocols.py: each mixed query's clean source protocol


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "singing-dev" / "tracks.csv"))
    ap.add_argument("--proto", required=True, help="make_protocols.py's folder (the clean sources)")
    ap.add_argument("--mixed", required=True, help="mixed_protocols.py's folder")
    ap.add_argument("--teacher", required=True, help="the fold teachers' checkpoints, {fold} for the fold's number")
    ap.add_argument("--student", action="append", default=[], metavar="NAME=PATTERN",
                    help="a distilled student's checkpoints, {fold} for the fold's number")
    ap.add_argument("--protocols", nargs="+", default=["P1a", "P3"], choices=sorted(SOURCE))
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--only", type=int, nargs="+", metavar="K", help="these folds only (e.g. a pilot's fold 0)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from singerid import cpu
    from singerid.data.manifest import load_tracks
    from singerid.embed import load_embedder
    from singerid.eval.cache import embed_files
    from singerid.separation import load_separator
    from singerid.weights import home

    cpu.configure()
    tracks = load_tracks(a.data)
    corpus = dict(zip(tracks["singer"], tracks["corpus"]))
    sep = load_separator("spleeter", "cpu", home() / "separated")
    cache = str(home() / "embeddings")
    clean = {p: pd.read_csv(Path(a.proto) / f"{SOURCE[p]}_query.csv") for p in a.protocols}
    mixed = {p: pd.read_csv(Path(a.mixed) / f"{p}_query.csv") for p in a.protocols}
    for m in mixed.values():
        m["src"] = [int(re.search(r"_(\d{4})_\d\d\.\w+$", s).group(1)) for s in m["path"]]

    def tracks_of(embedder, paths, separator) -> np.ndarray:
        return np.stack([w.track for w in embed_files(embedder, list(paths), cache, separator=separator,
                                                      progress=False)])

    rows, crowd = [], []
    for k, held in enumerate(folds_of(tracks, a.folds)):  # each fold's models loaded once
        if a.only is not None and k not in a.only:
            continue
        teacher = load_embedder(checkpoint=a.teacher.format(fold=k))
        systems = {"teacher + Spleeter": (teacher, sep), "teacher, raw mixture": (teacher, None)}
        systems |= {n: (load_embedder(checkpoint=c.format(fold=k)), None)
                    for n, c in (s.split("=", 1) for s in a.student)}
        spaces = {"backend": teacher.backend.apply, "raw": lambda x: x}
        for p in a.protocols:
            m = mixed[p][mixed[p]["singer"].isin(held)]
            src = sorted(set(m["src"]))
            ref = dict(zip(src, tracks_of(teacher, clean[p]["path"].iloc[src], sep)))  # the teacher, clean voice
            r = np.stack([ref[i] for i in m["src"]])
            for name, (embedder, separator) in systems.items():
                x = tracks_of(embedder, m["path"], separator)
                for space, f in spaces.items():
                    cos = (unit(f(x)) * unit(f(r))).sum(1)
                    rows += [(p, name, space, corpus[singer], v) for singer, v in zip(m["singer"], cos)]
            u = unit(teacher.backend.apply(np.stack([ref[i] for i in src])))  # crowding among the clean readings
            who = clean[p]["singer"].iloc[src].to_numpy()
            sim = u @ u.T
            crowd += [(p, corpus[singer], sim[i][who != singer].max()) for i, singer in enumerate(who)]
    d = pd.DataFrame(rows, columns=["protocol", "system", "space", "corpus", "cos"])
    for p in a.protocols:
        t = d[d["protocol"] == p].groupby(["space", "system", "corpus"], sort=False)["cos"].mean().unstack()
        cr = pd.DataFrame(crowd, columns=["protocol", "corpus", "cos"])
        near = cr[cr["protocol"] == p].groupby("corpus")["cos"].mean()
        print(f"\n{p}: cosine of the mixture's reading to the teacher's reading of the clean voice (mean per corpus)")
        print("| space | system | " + " | ".join(t.columns) + " |\n" + "|---" * (len(t.columns) + 2) + "|")
        for (space, system), v in t.iterrows():
            print(f"| {space} | {system} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
        print("nearest other held-out singer, teacher's clean readings, backend space: "
              + ", ".join(f"{c} {v:.3f}" for c, v in near.items()))


if __name__ == "__main__":
    main()
