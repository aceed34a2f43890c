"""Identification protocol: splits, vote, heads, sweeps, loaders, analyses and the evaluate contract."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from singerid.cli import main
from singerid.data.manifest import load_tracks
from singerid.eval.cache import Windows
from singerid.eval.datasets import load_split_files
from singerid.eval.experiments import ExperimentConfig, sweep
from singerid.eval.heads import CentroidClassifier, HeadConfig, train_head
from singerid.eval.splits import load_splits, make_splits, save_splits
from singerid.eval.vote import majority_vote, topk_hits
from singerid.models import create_model, save_model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return str(save_model(tmp_path_factory.mktemp("ck") / "tiny", create_model("tiny", seed=0)))


def _table(n_singers=5, n_tracks=6) -> pd.DataFrame:
    rows = [{"path": f"/x/{s}_{t}.flac", "singer": f"s{s}", "song": f"{s}_{t}", "kind": "real", "stem": "mixture",
             "split": "", "vocal_segs": None} for s in range(n_singers) for t in range(n_tracks)]
    return pd.DataFrame(rows)


def test_splits_disjoint_reproducible_and_saved(tmp_path):
    t = _table()
    t = pd.concat([t, pd.DataFrame([{"path": "/x/few.flac", "singer": "few", "song": "f", "kind": "real", "stem": "mixture", "split": ""}])])
    a, b, c = make_splits(t, seed=1), make_splits(t, seed=1), make_splits(t, seed=2)
    assert a == b and a != c
    assert "few" not in a  # 1 track: cannot give test + val + 3 train
    for s in a.values():
        assert s.test != s.val and s.test not in s.train and s.val not in s.train and len(s.train) == 4
    save_splits(tmp_path / "splits.json", a)
    assert load_splits(tmp_path / "splits.json") == a


def test_given_split_column_is_honoured():
    t = _table(2, 5)
    t["split"] = ["test", "val", "train", "train", "train"] * 2
    s = make_splits(t)
    assert s["s0"].test == "/x/0_0.flac" and s["s0"].val == "/x/0_1.flac" and len(s["s0"].train) == 3


def test_majority_vote_and_topk_on_hand_made_tables():
    # 5 windows, 4 classes: votes 0:2, 2:2, 3:1 → tie between 0 and 2 broken by summed scores (class 2 higher)
    s = np.array([[.9, 0, .1, 0], [.8, 0, .1, .1], [.1, 0, .7, .2], [0, .1, .95, 0], [0, 0, .2, .6]])
    ranking, votes = majority_vote(s)
    assert list(votes) == [2, 0, 2, 1]
    assert list(ranking[:3]) == [2, 0, 3]
    rankings = [np.array([2, 0, 3, 1]), np.array([1, 0, 2, 3]), np.array([3, 2, 1, 0])]
    assert list(topk_hits(rankings, [2, 0, 0], 1)) == [True, False, False]
    assert list(topk_hits(rankings, [2, 0, 0], 2)) == [True, True, False]
    with pytest.raises(ValueError):
        majority_vote(np.zeros((0, 3)))


def _clusters(n_classes=6, dim=32, n_tracks=5, n_win=6, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    def track(c):
        x = centres[c] + noise * rng.standard_normal((n_win, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return centres, track


def test_classifier_head_and_centroid_learn_separable_classes():
    _, track = _clusters()
    tr = [track(c) for c in range(6) for _ in range(4)]
    y = np.repeat(np.arange(6), 4)
    val = np.concatenate([track(c)[:4] for c in range(6)])
    yv = np.repeat(np.arange(6), 4)
    head = train_head(tr, y, val, yv, 6, HeadConfig(max_epochs=15, stop_patience=5))
    test = [track(c) for c in range(6)]
    assert np.mean([majority_vote(head.scores(t))[0][0] == c for c, t in enumerate(test)]) >= 5 / 6
    cen = CentroidClassifier.fit(np.concatenate(tr), np.repeat(y, 6), 6)
    assert np.mean([majority_vote(cen.scores(t))[0][0] == c for c, t in enumerate(test)]) == 1.0


def test_sweep_two_counts_two_runs_gives_mean_and_std():
    _, track = _clusters(n_classes=8, noise=0.8)
    t = _table(8, 6)
    splits = make_splits(t, seed=0)
    win = {p: Windows(np.arange(6.0), track(int(p.split("/")[-1].split("_")[0]))) for p in t["path"]}
    cfg = ExperimentConfig(class_counts=[4, 8], runs=2, method="head", head=HeadConfig(max_epochs=8, stop_patience=4))
    res = sweep(win, splits, cfg)
    assert set(res["results"]) == {"4", "8"}
    for r in res["results"].values():
        assert len(r["top1_runs"]) == 2 and 0 <= r["top1_std"] <= 50
        assert r["top1_mean"] == pytest.approx(np.mean(r["top1_runs"]))
        assert r["top5_mean"] >= r["top1_mean"]
    assert res["results"]["4"]["n_tests"] == 4 and res["results"]["8"]["n_tests"] == 8
    # cloned protocol: clones of s0/s1 are the test set, their classes always included
    clones = {"s0": ["/x/0_0.flac"], "s1": ["/x/1_0.flac"]}
    cl = sweep(win, splits, ExperimentConfig(class_counts=[3], runs=2, method="centroid"), tests=clones, label="cloned")
    assert cl["results"]["3"]["n_tests"] == 2
    assert all({r["singer"] for r in run} == {"s0", "s1"} for run in cl["records"]["3"])


def test_fma_and_mtg_loaders_read_the_authors_schema(tmp_path):
    fma = {"train": {"12": {"track": [{"file_id": "012345.mp3", "vocal_segs": [0, 12.0]}, {"file_id": "012346.mp3", "vocal_segs": [6]}]}},
           "val": {"12": {"track": {"file_id": "012347.mp3", "vocal_segs": [3]}}},
           "test": {"12": {"track": {"file_id": "099999.mp3", "vocal_segs": [30]}}}}
    mtg = {"train": {"artist_7": [{"file_id": "07/1234.mp3", "vocal_segs": [0]}]},
           "val": {"artist_7": {"file_id": "08/1.mp3", "vocal_segs": [1]}},
           "test": {"artist_7": {"file_id": "09/2.mp3", "vocal_segs": [2]}}}
    for name, data in (("fma", fma), ("mtg", mtg)):
        files = {}
        for split, d in data.items():
            files[split] = tmp_path / f"{name}_{split}.json"
            files[split].write_text(json.dumps(d))
        df = load_split_files(name, files, "/data")
        assert set(df["split"]) == {"train", "val", "test"}
        if name == "fma":
            assert len(df) == 4 and "/data/fma_full/012/012345.mp3" in set(df["path"])
            assert json.loads(df[df["split"] == "test"]["vocal_segs"].iloc[0]) == [30.0]
        else:
            assert "/data/mtg-jamendo-dataset/audio/07/1234.mp3" in set(df["path"])
    out = tmp_path / "fma.csv"
    assert main(["convert-splits", "--format", "fma", "--train", str(tmp_path / "fma_train.json"), "--val",
                 str(tmp_path / "fma_val.json"), "--test", str(tmp_path / "fma_test.json"), "--audio-root", "/data",
                 "--out", str(out)]) == 0
    t = load_tracks(out)
    assert t["vocal_segs"].iloc[0] == [0.0, 12.0]


def test_evaluate_contract_writes_documented_json(synth_catalogue, tmp_path, tiny_ckpt, capsys):
    t = pd.read_csv(synth_catalogue)
    base = synth_catalogue.parent
    t["path"] = [str(base / p) for p in t["vocals_path"]]
    q = t.groupby("singer").head(1)
    e = t.drop(q.index)
    q = pd.concat([q, pd.DataFrame([{"path": str(tmp_path / "missing.flac"), "singer": "singer00"}])])
    e[["path", "singer"]].to_csv(tmp_path / "e.csv", index=False)
    q[["path", "singer"]].to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "r.json"
    for method in ("centroid", "head"):
        assert main(["evaluate", "--enroll", str(tmp_path / "e.csv"), "--query", str(tmp_path / "q.csv"), "--json",
                     str(out), "--checkpoint", tiny_ckpt, "--method", method, "--cache", str(tmp_path / "cache"),
                     "--separate", "none"]) == 0
        r = json.loads(out.read_text())
        assert {"top1", "top5", "n", "queries"} <= set(r)
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["n"] == 7
        assert r["n_errors"] == 1
        ok = [x for x in r["queries"] if "error" not in x]
        assert len(ok) == 6
        for x in ok:
            assert set(x) >= {"path", "singer", "predicted"} and 1 <= len(x["predicted"]) <= 5
            assert all(isinstance(s, str) and isinstance(v, float) for s, v in x["predicted"])
            assert {s for s, _ in x["predicted"]} <= set(e["singer"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "top-1" in line and "top-5" in line
    assert any((tmp_path / "cache").rglob("*.npz"))  # windows cached for reuse


def test_sweep_and_analyse_commands_write_results(tmp_path, tiny_ckpt):
    from singerid.testing import make_catalogue

    table = make_catalogue(tmp_path / "cat", n_singers=5, songs_per_singer=5, seconds=13.0, seed=3)
    t = pd.read_csv(table)
    t["genre"] = ["pop" if i % 2 else "folk" for i in range(len(t))]
    t.to_csv(table, index=False)
    common = ["--manifest", str(table), "--classes", "3", "5", "--runs", "2", "--checkpoint", tiny_ckpt, "--cache", "none",
              "--separate", "none"]
    assert main(["sweep", "--out", str(tmp_path / "sw"), "--method", "centroid", *common]) == 0
    res = json.loads((tmp_path / "sw" / "results.json").read_text())
    assert set(res["closed"]["results"]) == {"3", "5"}
    assert (tmp_path / "sw" / "splits.json").is_file() and (tmp_path / "sw" / "report.md").is_file()
    assert main(["analyse", "--out", str(tmp_path / "an"), "--method", "centroid", *common]) == 0
    a = json.loads((tmp_path / "an" / "analyses.json").read_text())
    assert set(a["genre"]) == {"pop", "folk"}
    assert set(a["similarity"]) == {"test/other", "test/val", "test/vocal", "test/instru", "test/test"}
    for png in ("genre.png", "training_tracks.png", "similarity.png"):
        assert (tmp_path / "an" / png).stat().st_size > 1000


def test_dev_set_voice_backend_small_protocol(dev_data, tmp_path):
    """On the real dev data (skipped when absent): 8 singers, one held-out real clip each, voice backend."""
    from singerid.weights import WeightsMissing, locate

    try:
        locate("voice")
    except WeightsMissing:
        pytest.skip("voice weights not fetched")
    t = load_tracks(dev_data / "tracks.csv")
    real = t[(t["kind"] == "real") & (t["stem"] == "vocals")]
    singers = sorted(real.groupby("singer").filter(lambda g: len(g) >= 3)["singer"].unique())[:8]
    real = real[real["singer"].isin(singers)]
    q = real.groupby("singer").head(1)
    real.drop(q.index)[["path", "singer"]].to_csv(tmp_path / "e.csv", index=False)
    q[["path", "singer"]].to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--enroll", str(tmp_path / "e.csv"), "--query", str(tmp_path / "q.csv"), "--json",
                 str(out), "--separate", "none", "--cache", "none"]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 8 and r["top5"] >= 0.75  # chance: 5/8 for top-5, 1/8 for top-1
    assert r["top1"] >= 0.375


def test_separate_given_uses_the_tables_vocal_stems(synth_catalogue, tmp_path, tiny_ckpt):
    t = pd.read_csv(synth_catalogue)
    for c in ("path", "vocals_path", "accompaniment_path"):
        t[c] = [str(synth_catalogue.parent / p) for p in t[c]]
    q = t.groupby("singer").head(1)
    t.drop(q.index).to_csv(tmp_path / "e.csv", index=False)
    q.to_csv(tmp_path / "q.csv", index=False)
    for sep in ("given", "none"):
        assert main(["evaluate", "--enroll", str(tmp_path / "e.csv"), "--query", str(tmp_path / "q.csv"), "--json",
                     str(tmp_path / f"{sep}.json"), "--checkpoint", tiny_ckpt, "--separate", sep, "--cache", "none"]) == 0
    given = json.loads((tmp_path / "given.json").read_text())
    plain = json.loads((tmp_path / "none.json").read_text())
    assert all(x["path"].endswith("_vocals.flac") for x in given["queries"])
    assert all(x["path"].endswith("_mix.flac") for x in plain["queries"])


def _takes_table(n_singers=4, n_songs=6, takes=3) -> pd.DataFrame:
    """Several takes per song (GTSinger-like techniques), one song of each singer as a mixture + its own vocal stem
    listed as two rows without a `song` value; an unbalanced second singer (twice the songs) included."""
    rows = []
    for s in range(n_singers):
        for g in range(n_songs * (2 if s == 1 else 1)):
            for k in range(takes):
                rows.append({"path": f"/x/{s}_{g}_{k}.flac", "singer": f"s{s}", "song": f"{s}_{g}", "kind": "real",
                             "stem": "vocals", "vocals_path": "", "split": ""})
        rows.append({"path": f"/x/{s}_mix.flac", "singer": f"s{s}", "song": "", "kind": "real", "stem": "mixture",
                     "vocals_path": f"/x/{s}_mixvox.flac", "split": ""})
        rows.append({"path": f"/x/{s}_mixvox.flac", "singer": f"s{s}", "song": "", "kind": "real", "stem": "vocals",
                     "vocals_path": "", "split": ""})
    return pd.DataFrame(rows)


def test_splits_validation_and_pairs_hold_out_whole_songs(monkeypatch):
    from singerid.data.manifest import song_keys
    from singerid.data.pairs import PairBatches, Source, TrackSources
    from singerid.eval import evaluate as ev

    t = _takes_table()
    song = dict(zip(t["path"], song_keys(t)))
    assert song["/x/0_mixvox.flac"] == song["/x/0_mix.flac"]  # a stem row shares its mixture's song
    for seed in range(5):
        for singer, sp in make_splits(t, seed=seed, min_train=3).items():
            parts = {"test": sp.test_tracks, "val": sp.val_tracks, "train": sp.train}
            songs = {k: {song[p] for p in v} for k, v in parts.items()}
            assert len(songs["test"]) == len(songs["val"]) == 1 and len(songs["train"]) >= 3
            assert not (songs["test"] & songs["val"] or songs["test"] & songs["train"] or songs["val"] & songs["train"])
            assert sp.test == sp.test_tracks[0] and sp.val == sp.val_tracks[0]
            assert sorted(p for v in parts.values() for p in v) == sorted(t["path"][t["singer"] == singer])
    assert set(make_splits(t, min_train=6)) == {"s1"}  # 8 distinct songs needed; others have 6 + the mix song
    # the given split column: a training take of the test song is moved out of training
    g = _takes_table(2, 6, 2)
    g["split"] = "train"
    g.loc[g["path"].isin(["/x/0_0_0.flac", "/x/1_0_0.flac"]), "split"] = "test"
    g.loc[g["path"].isin(["/x/0_1_0.flac", "/x/1_1_0.flac"]), "split"] = "val"
    given = make_splits(g)
    assert given["s0"].test_tracks == ["/x/0_0_0.flac", "/x/0_0_1.flac"] and "/x/0_0_1.flac" not in given["s0"].train
    # the evaluate contract's head: its validation song is held out of training with every take
    seen = {}
    monkeypatch.setattr(ev, "train_head", lambda tr, y, xv, yv, n, cfg: seen.update(train=tr, val=xv))
    wins = [Windows(np.arange(4.0), np.full((4, 2), i, np.float32)) for i in range(len(t))]
    labels = [int(s[1:]) for s in t["singer"]]
    ev.fit_classifier(wins, labels, 4, "head", songs=list(song.values()))
    train_songs = {song[t["path"][int(x[0, 0])]] for x in seen["train"]}
    val_songs = {song[t["path"][int(x[0])]] for x in seen["val"]}
    assert len(val_songs) == 4 and not val_songs & train_songs
    # contrastive pairs (training and the fixed validation pairs): never two takes of one song
    sources: dict[str, list[TrackSources]] = {}
    for p, s in zip(t["path"], t["singer"]):
        sources.setdefault(s, []).append(TrackSources(s, song[p], None, Source(p, 10.0, None)))
    for seed in (0, 1_000_003):  # the loop's training and validation seeds
        ds = PairBatches(sources, sorted(sources), "vocal", batch_pairs=4, seed=seed, steps=40)
        for step in range(40):
            for singer, a, b in ds.plan(step):
                assert song[a.path] != song[b.path] and a.path.startswith(f"/x/{singer[1:]}_")


def test_head_sampler_is_class_balanced_on_an_unbalanced_table():
    from singerid.eval.heads import TrackSampler

    labels = np.repeat(np.arange(4), [1, 3, 10, 40])  # 54 tracks: one singer has 40, another 1
    rng = np.random.default_rng(0)
    freq = np.bincount(labels[TrackSampler(labels)(rng, 40_000)], minlength=4) / 40_000
    np.testing.assert_allclose(freq, 0.25, atol=0.01)
    by_track = np.bincount(labels[TrackSampler(labels, "track")(rng, 40_000)], minlength=4) / 40_000
    assert by_track[3] > 0.7  # the old draw: proportional to tracks
    draws = TrackSampler(labels)(rng, 40_000)
    within = np.bincount(draws[labels[draws] == 1], minlength=54)[1:4]
    np.testing.assert_allclose(within / within.sum(), 1 / 3, atol=0.03)  # then a track uniformly within the singer


def test_reference_topk_multi_singer_clones_and_all_classes():
    from singerid.cli.parser import build_parser
    from singerid.eval.experiments import resolve_counts

    # one vote for class 3, none elsewhere: ours fills ranks by summed score, reference arbitrarily
    s = np.array([[0.0, 0.3, 0.2, 0.5]])
    assert list(majority_vote(s)[0]) == [3, 1, 2, 0]
    refs = [tuple(majority_vote(s, "reference", np.random.default_rng(i))[0]) for i in range(20)]
    assert all(r[0] == 3 for r in refs) and len(set(refs)) > 1
    assert list(topk_hits([np.array([3, 1, 2, 0])], [[0, 1]], 2)) == [True]  # any of several singers counts
    assert resolve_counts(["all", 3, 100], 6) == [3, 6] and resolve_counts([100], 6) == [6]
    a = build_parser().parse_args(["sweep", "--manifest", "m", "--out", "o", "--classes", "all", "4", "--topk-compat", "reference"])
    assert a.classes == ["all", 4] and a.topk_compat == "reference"
    # a clone of a duet: tested once, right if either singer is predicted; its classes always included
    _, track = _clusters(n_classes=6, noise=0.3)
    t = _table(6, 6)
    splits = make_splits(t, seed=0)
    win = {p: Windows(np.arange(6.0), track(int(p.split("/")[-1].split("_")[0]))) for p in t["path"]}
    win["/x/duet.flac"] = Windows(np.arange(6.0), track(1))
    cfg = ExperimentConfig(class_counts=["all"], runs=2, method="centroid", topk_compat="reference")
    res = sweep(win, splits, cfg, tests={"s0|s1": ["/x/duet.flac"]}, label="cloned")
    assert list(res["results"]) == ["6"] and res["results"]["6"]["top1_mean"] == 100.0
    assert all(r["singer"] == "s0|s1" for run in res["records"]["6"] for r in run)


def test_raw_head_input_keeps_norms_in_the_cache(tmp_path):
    """A model whose head reads raw encoder outputs (the `paper` preset): the cache keeps L2-normalised embeddings
    for centroids and catalogues, plus the raw norms, and `features(raw=True)` gives back the encoder output."""
    import torch

    from singerid.embed import ModelEmbedder
    from singerid.eval.cache import embed_files, reads_raw
    from singerid.models import get_config
    from singerid.testing import make_catalogue

    cfg = get_config("tiny")
    cfg.head_input = "raw"
    ckpt = save_model(tmp_path / "raw", create_model(cfg, seed=0))
    emb = ModelEmbedder.from_checkpoint(ckpt, "cpu")
    assert reads_raw(emb) and not reads_raw(ModelEmbedder.from_checkpoint(save_model(tmp_path / "l2", create_model("tiny")), "cpu"))
    table = pd.read_csv(make_catalogue(tmp_path / "cat", n_singers=1, songs_per_singer=1, seconds=7.0, seed=0))
    path = str(tmp_path / "cat" / table["path"].iloc[0])
    for _ in range(2):  # embedded, then read back from the cache
        (w,) = embed_files(emb, [path], tmp_path / "cache", starts=[[0.0]], workers=0, progress=False)
        np.testing.assert_allclose(np.linalg.norm(w.emb, axis=1), 1.0, atol=1e-5)
        assert w.norm is not None and w.norm.shape == (1,)
    from singerid.audio import load_audio, peak_normalise

    x = peak_normalise(load_audio(path, 16000)[None, :96000].astype(np.float32))
    with torch.inference_mode():
        raw = emb.model.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(w.features(raw=True), raw, rtol=1e-4, atol=1e-5)


def test_the_cache_follows_a_checkpoints_weights_not_its_folder_name(tmp_path):
    """The same checkpoint under another folder name (linked, copied, renamed) finds its embeddings in the cache;
    other weights or another configuration do not."""
    import shutil

    from singerid.embed import ModelEmbedder
    from singerid.eval.cache import model_key
    from singerid.models import get_config

    a = save_model(tmp_path / "run", create_model("tiny", seed=0))
    shutil.copytree(tmp_path / "run", tmp_path / "renamed")
    key = model_key(ModelEmbedder.from_checkpoint(a, "cpu"))
    assert model_key(ModelEmbedder.from_checkpoint(tmp_path / "renamed", "cpu")) == key
    assert model_key(ModelEmbedder.from_checkpoint(save_model(tmp_path / "other", create_model("tiny", seed=1)), "cpu")) != key
    cfg = get_config("tiny")
    cfg.head_input = "raw"  # same weights' shapes, another configuration
    assert model_key(ModelEmbedder.from_checkpoint(save_model(tmp_path / "raw", create_model(cfg, seed=0)), "cpu")) != key
