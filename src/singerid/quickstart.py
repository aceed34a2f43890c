"""The README's main job on its embedded default, fully offline: synthesise a catalogue of singers (mixtures with
vocal stems), train the `tiny` Vocal model briefly, enrol three songs per singer into a catalogue, then ask
"whose voice is this?" of each singer's held-out song and of a singer nobody enrolled.

With `folder`, the user's own tracks table is enrolled instead (pretrained `voice` backend) and `queries` identified.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .catalogue import Catalogue
from .data.manifest import load_tracks
from .testing import make_catalogue
from .train.loop import TrainConfig, train

log = logging.getLogger(__name__)


def run(workdir: str | None = None, singers: int = 8, steps: int = 300, seed: int = 0) -> dict:
    """→ {"workdir", "checkpoint", "catalogue", "results": [identify dicts with "truth"]}"""
    root = Path(workdir or tempfile.mkdtemp(prefix="singerid-quickstart-"))
    table = make_catalogue(root / "data", n_singers=singers + 1, songs_per_singer=4, seconds=7.0, seed=seed)
    tracks = load_tracks(table)
    unknown = f"singer{singers:02d}"  # synthesised but never trained on nor enrolled
    known = tracks[tracks["singer"] != unknown]
    train_table = root / "train.csv"
    known.to_csv(train_table, index=False)
    run_dir = train(TrainConfig(manifest=str(train_table), out=str(root / "run"), mode="vocal", model="tiny",
                                max_steps=steps, batch_pairs=singers, epoch_steps=100, val_steps=2, num_workers=1,
                                seed=seed))
    vocals = known.assign(path=known["vocals_path"], stem="vocals", vocals_path="")
    held = vocals["song"].str.endswith("song3")
    cat = Catalogue.create(root / "catalogue", checkpoint=str(run_dir), separate="none")
    cat.enroll(vocals[~held], progress=False)
    queries = [(p, s) for p, s in zip(vocals[held]["path"], vocals[held]["singer"])]
    queries += [(p, "(not enrolled)") for p in tracks[tracks["singer"] == unknown]["vocals_path"][:2]]
    results = [{**cat.identify(p), "truth": s} for p, s in queries]
    return {"workdir": str(root), "checkpoint": str(run_dir), "catalogue": str(cat.folder), "results": results}


def summary(results: list[dict]) -> str:
    lines, right, known = [], 0, 0
    for r in results:
        c = r["candidates"][0]
        conf = f"{100 * c['confidence']:.0f} %" if c["confidence"] is not None else "n/a"
        thr = r["threshold"] if r["threshold"] is not None else float("nan")  # nan: uncalibrated
        lines.append(f"  {Path(r['path']).name:32s} truth {r['truth']:15s} -> {r['decision']:10s} "
                     f"(best {c['singer']}, score {c['score']:.3f}, decision score {r['decision_score']:.3f} "
                     f"vs {thr:.3f}, confidence {conf})")
        if r["truth"] != "(not enrolled)":
            known += 1
            right += r["decision"] == r["truth"]
    lines.append(f"held-out songs of enrolled singers identified: {right}/{known}; "
                 f"not-enrolled singer answered 'unknown': "
                 f"{sum(r['decision'] == 'unknown' for r in results if r['truth'] == '(not enrolled)')}/"
                 f"{sum(r['truth'] == '(not enrolled)' for r in results)}")
    return "\n".join(lines)
