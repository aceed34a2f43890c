"""Singer adaptation: clone-aware pairs, training the `voice` preset, the scoring backend fitted at the end."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from singerid.data.manifest import load_tracks
from singerid.data.pairs import PairBatches, build_sources
from singerid.weights import WeightsMissing, locate


def _with_clones(synth_catalogue, tmp_path):
    """The synthetic table's vocal stems, plus 'clones': singer X's stems relabelled as imitating singer Y (source X),
    and one self-conversion (source == target)."""
    t = pd.read_csv(synth_catalogue)
    base = synth_catalogue.parent
    real = pd.DataFrame({"path": [str(base / p) for p in t["vocals_path"]], "singer": t["singer"], "song": t["song"],
                         "stem": "vocals", "kind": "real", "source_singer": ""})
    singers = sorted(t["singer"].unique())
    clones = []
    for i, s in enumerate(singers):
        target = singers[(i + 1) % len(singers)]
        for p, song in zip(real["path"][real["singer"] == s][:2], real["song"][real["singer"] == s][:2]):
            clones.append({"path": p, "singer": target, "song": f"clone-{song}", "stem": "vocals", "kind": "cloned",
                           "source_singer": s})
    clones.append({"path": real["path"][0], "singer": real["singer"][0], "song": "self", "stem": "vocals",
                   "kind": "cloned", "source_singer": real["singer"][0]})
    table = tmp_path / "with_clones.csv"
    pd.concat([real, pd.DataFrame(clones)]).to_csv(table, index=False)
    return table


def test_clone_positives_respect_target_and_source(synth_catalogue, tmp_path):
    tracks = load_tracks(_with_clones(synth_catalogue, tmp_path))
    source_of = {p: s for p, s, k in zip(tracks["path"], tracks["source_singer"], tracks["kind"]) if k == "cloned"}
    off = build_sources(tracks, "vocal")
    assert not any(t.cloned for ts in off.values() for t in ts)  # the paper's setting: no clones
    on = build_sources(tracks, "vocal", clones=True)
    pool = {s: ts for s, ts in on.items()}
    assert all(t.singer == s for s, ts in pool.items() for t in ts)
    assert not any(t.cloned and t.song == "self" for ts in pool.values() for t in ts)  # self-conversions left out
    ds = PairBatches(on, list(on), "vocal", 6, seed=0, steps=200)
    seen_clone = 0
    for step in range(200):
        for singer, a, b in ds.plan(step):
            sides = [t for t in pool[singer] for src in (a, b) if t.vocal == src]
            cloned = [t for t in sides if t.cloned]
            assert len({t.song for t in sides}) >= 2 or len(sides) > 2  # two different songs
            assert len(cloned) < len(sides)  # never clone with clone: one side is real
            for t in cloned:
                seen_clone += 1
                assert t.singer == singer and source_of.get(t.vocal.path) != singer
    assert seen_clone > 50


def test_voice_preset_training_lowers_the_loss_and_fits_a_backend(synth_catalogue, tmp_path):
    try:
        locate("voice")
    except WeightsMissing:
        pytest.skip("voice weights not fetched (singerid fetch-weights)")
    from singerid.embed import ModelEmbedder
    from singerid.models import resolve_checkpoint
    from singerid.train.loop import TrainConfig, train

    table = _with_clones(synth_catalogue, tmp_path)
    cfg = TrainConfig(manifest=str(table), out=str(tmp_path / "run"), mode="vocal", model="voice", max_steps=40,
                      batch_pairs=6, epoch_steps=20, val_steps=2, num_workers=0, seed=0, augment=("reverb", "eq"),
                      encoder_lr=1e-3)
    run = train(cfg)
    with open(run / "log.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == "train"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.05, losses
    emb = ModelEmbedder.from_checkpoint(run, "cpu")
    assert emb.backend is not None and emb.backend.info["kind"] == "wccn"  # the preset's scoring backend
    assert (resolve_checkpoint(run) / "backend.safetensors").is_file()
    frozen = emb.model.encoder.lstm.weight_ih_l0.detach().numpy()
    from singerid.models import create_model

    np.testing.assert_array_equal(frozen, create_model("voice").encoder.lstm.weight_ih_l0.detach().numpy())
    x = emb.embed_windows(np.random.default_rng(0).standard_normal((2, 96000)).astype(np.float32) * 0.1)
    assert x.shape == (2, emb.dim) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
