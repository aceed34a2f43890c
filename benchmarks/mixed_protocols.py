"""Denser mixture protocols: each query voice mixed at 0 dB onto every instrumental of P3's query half.

make_protocols.py's P3 puts each of the 244 clones on one instrumental of the query half, drawn at random; which one
it drew (a loud band, a quiet pad) moves a query's difficulty as much as the voice does, and it holds the clones of
only 12 singers. This folder has, for the same held-out-singer scoring (`dev_folds.py --protocols`):

- P3: every clone mixed onto every instrumental of the query half (10 on the dev set: 2,440 queries); enrolment:
  P3's own, copied, so the catalogue is unchanged.
- P1a, P1b: the same for the real held-out songs of those protocols (27 singers each, 270 queries): a real voice on a
  foreign instrumental, enrolled on the other half's instrumentals (each enrolment clip mixed onto one of them, drawn
  as make_protocols.py draws P3's); 27 singers instead of 12, the clones' mechanism without the clones.

Same 0 dB vocal-to-accompaniment ratio by mean power as make_protocols.py, a seeded random offset:

    python benchmarks/mixed_protocols.py --proto /tmp/proto --out /tmp/proto_mixed
    python benchmarks/dev_folds.py --proto /tmp/proto_mixed --protocols P1a P1b P3 --out /tmp/mixed ...

The singers are the folds' held-out ones, so a between-singer spread stays; what shrinks is the instrumental draw's.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "singing-dev"
SR = 16000


def load(path) -> np.ndarray:
    from singerid.audio import load_audio

    return load_audio(str(path), SR)


def mix(voice: np.ndarray, inst: np.ndarray, rng: np.random.Generator, vda_db: float = 0.0) -> np.ndarray:
    """`voice` over a window of `inst` (tiled when shorter) at `vda_db` by mean power, peak-limited to 1."""
    if len(inst) < len(voice):
        inst = np.tile(inst, len(voice) // len(inst) + 1)
    o = int(rng.integers(0, len(inst) - len(voice) + 1))
    acc = inst[o:o + len(voice)]
    pv, pa = np.mean(voice ** 2) + 1e-9, np.mean(acc ** 2) + 1e-9
    y = voice + acc * np.sqrt(pv / pa / 10 ** (vda_db / 10))
    return (y / max(1.0, float(np.abs(y).max()))).astype(np.float32)


def write_mixed(rows: pd.DataFrame, insts: list[np.ndarray], rng: np.random.Generator, out: Path, name: str,
                every: bool) -> None:
    """Each row's voice mixed onto every one of `insts` (`every`) or onto one drawn at random; a protocol table."""
    table = []
    for i, r in enumerate(tqdm(list(rows.itertuples()), desc=name)):
        voice = load(r.path)
        for j in range(len(insts)) if every else [int(rng.integers(len(insts)))]:
            p = (out / "mix" / f"{name}_{i:04d}_{j:02d}.flac").resolve()
            sf.write(p, mix(voice, insts[j], rng), SR)
            table.append((str(p), r.singer))
    pd.DataFrame(table, columns=["path", "singer"]).to_csv(out / f"{name}.csv", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT), help="the dev set's folder (tracks.csv)")
    ap.add_argument("--proto", required=True, help="make_protocols.py's folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data, proto, out = Path(a.data), Path(a.proto), Path(a.out)
    (out / "mix").mkdir(parents=True, exist_ok=True)
    rows = pd.read_csv(data / "tracks.csv")
    paths = rows.loc[rows["stem"] == "instrumental", "path"].tolist()
    half = len(paths) // 2  # make_protocols.py's halves: enrolment mixes draw from the first, queries from the second
    enrol_insts, query_insts = ([load(data / p) for p in part] for part in (paths[:half], paths[half:]))
    rng = np.random.default_rng(a.seed)
    shutil.copy(proto / "P3_enrol.csv", out / "P3_enrol.csv")
    write_mixed(pd.read_csv(proto / "P2_query.csv"), query_insts, rng, out, "P3_query", every=True)
    for p in ("P1a", "P1b"):
        write_mixed(pd.read_csv(proto / f"{p}_enrol.csv"), enrol_insts, rng, out, f"{p}_enrol", every=False)
        write_mixed(pd.read_csv(proto / f"{p}_query.csv"), query_insts, rng, out, f"{p}_query", every=True)
    print(f"wrote {out}: " + ", ".join(f"{p} {len(pd.read_csv(out / f'{p}_query.csv'))} queries"
                                        for p in ("P1a", "P1b", "P3")))


if __name__ == "__main__":
    main()
