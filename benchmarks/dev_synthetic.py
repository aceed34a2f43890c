"""The synthetic-voice detector on the dev set, held out as `train-detector` holds it out, with robustness rows.

Leave-system-out folds (`synthetic_train.folds`): each clone system held out in turn with a share of the real
singers; every clip is scored once, by a detector that saw neither its system nor its singer. EER per held-out system
(its clones against every held-out real voice) and pooled, with every real voice and corpus-balanced (only NUS-48E
real voices, the corpus the clones were made from, so "which corpus" is no cue). Rows:

- clean: the vocal as given;
- mp3 / opus: the test clip re-encoded (mp3 64 kbit/s, opus 32 kbit/s);
- pitch ±2: the test clip pitch-shifted by 2 semitones up / down (librosa's phase vocoder + resampling);
- mixed: the test clip mixed at 0 dB onto a dev instrumental, separated by Spleeter, the separated vocal scored
  (`synthetic.detect_audio`, as `identify` and `detect-synthetic` read mixtures).

    python benchmarks/dev_synthetic.py [--data ../shared/data/singing-dev] [--instrumentals ../shared/data/instrumentals-train] [--views clean mp3 ...]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from singerid.audio import load_audio
from singerid.augment import codec
from singerid.synthetic import cut, detect_audio
from singerid.synthetic_train import DetectorTrainConfig, clip_features, detector_rows, eer, fold_detectors

SR = 16000


def pitch(semitones: float):
    def shift(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import librosa

        return librosa.effects.pitch_shift(wave, sr=SR, n_steps=semitones).astype(np.float32)
    return shift


VIEWS = {
    "clean": lambda w, rng: w,
    "mp3": lambda w, rng: codec(w, rng, "mp3", 64_000),
    "opus": lambda w, rng: codec(w, rng, "opus", 32_000),
    "pitch+2": pitch(2.0),
    "pitch-2": pitch(-2.0),
    "mixed": None,  # separated from a 0-dB mixture: handled apart
}


def instrumentals(data: Path) -> list[np.ndarray]:
    t = pd.read_csv(data / "tracks.csv")
    return [load_audio(data / p, SR) for p in t[t["stem"] == "instrumental"]["path"]]


def mix(voc: np.ndarray, inst: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vocal + an instrumental excerpt at 0 dB (RMS), peak ≤ 0.95."""
    start = int(rng.integers(0, max(1, len(inst) - len(voc))))
    acc = np.resize(inst[start:], len(voc))
    acc = acc * np.sqrt((np.mean(voc**2) + 1e-9) / (np.mean(acc**2) + 1e-9))
    y = voc + acc
    return (y / max(1.0, np.abs(y).max() / 0.95)).astype(np.float32)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/singing-dev"))
    p.add_argument("--instrumentals", metavar="DIR_OR_TABLE",
                   help="train with one separated remix per clip onto these (e.g. ../shared/data/instrumentals-train; "
                        "the mixed row's test instrumentals are the dev set's own, never these)")
    p.add_argument("--views", nargs="+", default=list(VIEWS), choices=list(VIEWS))
    p.add_argument("--json", help="write the scores and figures here")
    a = p.parse_args(argv)
    data = Path(a.data)
    tracks = pd.read_csv(data / "tracks.csv")
    tracks["path"] = [str(data / x) for x in tracks["path"]]
    rows = detector_rows(tracks)
    separator = inst = None
    if "mixed" in a.views or a.instrumentals:
        from singerid.separation import load_separator

        separator, inst = load_separator("spleeter"), instrumentals(data)
    train_inst = []
    if a.instrumentals:
        from singerid.scoring import decode_instrumentals
        from singerid.train.recipe import instrumental_table

        train_inst = decode_instrumentals(instrumental_table(a.instrumentals, tracks))
    cfg = DetectorTrainConfig(remixes=1 if train_inst else 0)
    clips = clip_features(rows, cfg, instrumentals=train_inst, separator=separator)
    scores = {v: {} for v in a.views}
    rng = np.random.default_rng(0)
    for test, det in tqdm(list(fold_detectors(clips, cfg)), desc="folds"):
        for i in np.flatnonzero(test):
            wave = load_audio(rows["path"][i], SR)
            for view in a.views:
                if view == "mixed":
                    y = mix(wave, inst[int(rng.integers(len(inst)))], rng)
                    scores[view][int(i)] = detect_audio(y, det, separator)["score"]
                else:
                    scores[view][int(i)] = det.score_windows(*cut(VIEWS[view](wave, rng)))["score"]
    return report(rows, scores, a.json)


def report(rows: pd.DataFrame, scores: dict, out: str | None) -> dict:
    kind, system, corpus = rows["kind"].to_numpy(), rows["system"].to_numpy(), rows["corpus"].to_numpy()
    systems = sorted(set(system[kind == "cloned"]))
    figures = {}
    for view, by_clip in scores.items():
        s = np.array([by_clip[i] for i in range(len(rows))])
        real, nus = s[kind == "real"], s[(kind == "real") & (corpus == "NUS-48E")]
        clones = s[kind == "cloned"]
        figures[view] = {"pooled": eer(clones, real), "pooled_corpus_balanced": eer(clones, nus),
                         **{sys: eer(s[system == sys], nus) for sys in systems}}
    print(f"\nEER % ({(kind == 'cloned').sum()} clones of {len(systems)} systems, {(kind == 'real').sum()} real voices, "
          f"{((kind == 'real') & (corpus == 'NUS-48E')).sum()} of them NUS-48E; per system: against NUS-48E)")
    cols = ["pooled", "pooled_corpus_balanced", *systems]
    print("| view | " + " | ".join(c.replace("pooled_corpus_balanced", "pooled, NUS real only") for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for view, f in figures.items():
        print(f"| {view} | " + " | ".join(f"{100 * f[c]:.1f}" for c in cols) + " |")
    if out:
        Path(out).write_text(json.dumps({"figures": figures, "scores": {v: {rows['path'][i]: x for i, x in d.items()}
                                                                         for v, d in scores.items()}}, indent=1))
    return figures


if __name__ == "__main__":
    main()
