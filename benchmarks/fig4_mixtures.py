"""Mixtures made from dev vocal stems and instrumentals, with their stems, for the paper's Fig. 4 similarity study
(`singerid analyse`) and for a paper-like Mixture model's training table.

Each real vocal stem of the chosen singers is mixed at `--vda` dB onto an instrumental window as long as it (looped
when shorter); the table gives path (the mixture), vocals_path (the original stem) and accompaniment_path (the
instrumental as it sits in the mixture). With `--home K`, each singer's songs all sit on K instrumentals of their own
(a discography's consistent accompaniment: the confound the paper's Mixture model learns); without it, every song
draws its instrumental at random.

    python benchmarks/fig4_mixtures.py --singers-of /tmp/dfolds/fold0/held.txt --out /tmp/fig4/eval
    python benchmarks/fig4_mixtures.py --table /tmp/dfolds/fold0/train.csv --instrumentals \
        ../shared/data/instrumentals-train/tracks.csv --home 1 --out /tmp/fig4/mixtrain
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def mix_table(tracks: pd.DataFrame, insts: list[str], out: Path, vda: float, home: int | None, seed: int) -> pd.DataFrame:
    from singerid.audio import load_audio
    from singerid.audio.io import fit_length

    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    singers = sorted(tracks["singer"].unique())
    homes = {s: rng.choice(len(insts), size=home, replace=False) for s in singers} if home else {}
    cache: dict[str, np.ndarray] = {}
    rows = []
    for i, r in enumerate(tracks.itertuples()):
        v = load_audio(r.path)
        j = int(rng.choice(homes[r.singer])) if home else int(rng.integers(len(insts)))
        a = cache.setdefault(insts[j], load_audio(insts[j]))
        start = int(rng.integers(0, max(1, len(a) - len(v))))
        a = fit_length(a[start:], len(v)).astype(np.float64)
        a *= np.sqrt(np.mean(v.astype(np.float64) ** 2) / max(np.mean(a**2), 1e-12) / 10 ** (vda / 10))
        mix = v + a
        peak = max(1.0, float(np.abs(mix).max()) / 0.95)
        name = f"audio/{i:04d}_{Path(r.path).stem}"
        sf.write(out / f"{name}_mix.flac", (mix / peak).astype(np.float32), 16000)
        sf.write(out / f"{name}_acc.flac", (a / peak).astype(np.float32), 16000)
        rows.append({"path": f"{name}_mix.flac", "singer": r.singer, "song": r.song, "kind": "real", "stem": "mixture",
                     "vocals_path": r.path, "accompaniment_path": f"{name}_acc.flac", "instrumental": insts[j],
                     "genre": ""})
    df = pd.DataFrame(rows)
    df.to_csv(out / "tracks.csv", index=False)
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=str(ROOT / "singing-dev" / "tracks.csv"), help="vocal stems (real rows used)")
    ap.add_argument("--singers-of", help="file with one singer a line (default: every singer of --table)")
    ap.add_argument("--instrumentals", help="table of instrumentals (default: --table's stem=instrumental rows)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vda", type=float, default=0.0, help="vocal-to-accompaniment ratio, dB")
    ap.add_argument("--home", type=int, help="instrumentals per singer (default: a random one per song)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from singerid.data.manifest import load_tracks

    t = load_tracks(a.table)
    rows = t[(t["kind"] == "real") & (t["stem"] == "vocals")]
    if a.singers_of:
        rows = rows[rows["singer"].isin(Path(a.singers_of).read_text().split())]
    it = load_tracks(a.instrumentals) if a.instrumentals else t
    insts = sorted(it["path"][it["stem"] == "instrumental"]) or sorted(it["path"])
    df = mix_table(rows, insts, Path(a.out), a.vda, a.home, a.seed)
    print(f"wrote {a.out}/tracks.csv: {len(df)} mixtures of {df['singer'].nunique()} singers on {len(insts)} instrumentals")


if __name__ == "__main__":
    main()
