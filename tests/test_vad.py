"""The vocal-activity model: training from synthetic stems, save/load, the pipeline's default, the cache key."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from singerid.cli import main
from singerid.models.ge2e import GE2EEncoder
from singerid.vad import VadModelConfig, VocalActivityModel, installed_vad
from singerid.vad_train import VadTrainConfig, split_files, stem_activity, train_vad

SR = 16000


@pytest.fixture(scope="module")
def encoder_weights():
    """The default encoder's pretrained weights (musicnn)."""
    _need_weights("musicnn")


def _need_weights(name: str) -> None:
    from singerid.weights import WeightsMissing, locate

    try:
        locate(name)
    except WeightsMissing:
        pytest.skip(f"{name} weights not fetched (singerid fetch-weights)")


def stems_table(catalogue: Path) -> pd.DataFrame:
    """The synthetic catalogue as separate stems: stem=vocals rows and stem=instrumental rows."""
    from singerid.data.manifest import load_tracks

    t = load_tracks(catalogue)
    voc = pd.DataFrame({"path": t["vocals_path"], "singer": t["singer"], "stem": "vocals"})
    inst = pd.DataFrame({"path": t["accompaniment_path"], "singer": "", "stem": "instrumental"})
    return pd.concat([voc, inst], ignore_index=True)


@pytest.fixture(scope="module")
def trained(synth_catalogue, encoder_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("vad") / "vad"
    cfg = VadTrainConfig(windows=400, epochs=20, held_out=0.34, test_mixes=1)
    model, report = train_vad([stems_table(synth_catalogue)], out, cfg)
    return out, model, report


def test_split_holds_out_whole_singers_and_files(synth_catalogue):
    files = split_files([stems_table(synth_catalogue)], 0.34, seed=3)
    singer = lambda p: Path(p).name.split("_")[0]
    assert {singer(p) for p in files["test_vocals"]}.isdisjoint(singer(p) for p in files["train_vocals"])
    assert len({singer(p) for p in files["test_vocals"]}) == 2
    assert set(files["test_instrumentals"]).isdisjoint(files["train_instrumentals"])
    assert files == split_files([stems_table(synth_catalogue)], 0.34, seed=3)  # seeded


def test_stem_activity_marks_the_sung_frames():
    voc = np.zeros(4 * SR, np.float32)
    voc[SR : 3 * SR] = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * SR) / SR)
    act = stem_activity(voc)
    assert act.shape == (80,) and act[20:60].all() and not act[:20].any() and not act[60:].any()


def test_model_trained_on_synthetic_stems_separates_held_out_windows(trained):
    _, _, r = trained
    assert r["n_mixture"] > 0 and r["n_instrumental"] > 0 and r["n_vocal"] > 0
    assert r["accuracy"] >= 0.85 and r["accuracy_instrumental"] >= 0.8, r


def test_train_vad_cli_pools_several_held_out_splits(synth_catalogue, encoder_weights, tmp_path, capsys):
    """`train-vad --splits 2`: two seeded splits, each reported, and the figure pooled over their held-out windows."""
    table = tmp_path / "stems.csv"
    stems_table(synth_catalogue).to_csv(table, index=False)
    assert main(["train-vad", "--manifest", str(table), "--out", str(tmp_path / "vad"), "--windows", "300",
                 "--epochs", "10", "--seed", "4", "--splits", "2"]) == 0
    out = capsys.readouterr().out
    assert "split 4:" in out and "split 5:" in out and "pooled over 2 splits" in out
    r = json.loads((tmp_path / "vad" / "vad.json").read_text())["held_out"]
    a, b = r["splits"]
    assert (a["seed"], b["seed"]) == (4, 5) and r["n"] == a["n"] + b["n"]
    assert r["accuracy"] == pytest.approx((a["accuracy"] * a["n"] + b["accuracy"] * b["n"]) / r["n"])
    assert split_files([stems_table(synth_catalogue)], 0.2, 4) != split_files([stems_table(synth_catalogue)], 0.2, 5)
    assert VocalActivityModel.load(tmp_path / "vad").cfg == VadModelConfig()  # the first split's model, saved


def test_save_load_round_trip(trained, synth_catalogue):
    out, model, _ = trained
    loaded = VocalActivityModel.load(out)
    assert loaded.ident == model.ident and loaded.cfg == model.cfg
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3 * SR)).astype(np.float32) * 0.1)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(wave), model.eval()(wave))
    from safetensors.torch import load_file

    assert not any(k.startswith("encoder.") for k in load_file(str(out / "vad.safetensors")))  # head only


def test_encoders_by_name():
    from singerid.models.musicnn import MusiCNN

    m = VocalActivityModel(VadModelConfig(hidden=8), encoder=MusiCNN())  # the default: one read per 3-s window
    v = VocalActivityModel(VadModelConfig(hidden=8, encoder="voice"), encoder=GE2EEncoder())  # per 1.6-s partial
    wave = torch.randn(2, 3 * SR) * 0.1
    assert m.features(wave).shape == (2, 1, 1756) and v.features(wave).shape == (2, 3, 1104)
    assert m(wave).shape == v(wave).shape == (2,)
    with pytest.raises(ValueError, match="unknown vocal-activity encoder"):
        VocalActivityModel(VadModelConfig(encoder="wav2vec"), encoder=GE2EEncoder())


def test_load_rejects_other_folders(tmp_path):
    (tmp_path / "vad.json").write_text('{"format": "singerid-vad", "window": 3.0}')  # the old CNN's format
    with pytest.raises(ValueError, match="train-vad"):
        VocalActivityModel.load(tmp_path)


def test_track_audio_uses_the_installed_model(trained, synth_catalogue, tmp_path, monkeypatch):
    import shutil

    from singerid import voiced
    from singerid.audio import load_audio
    from singerid.vad import vad_folder
    from singerid.weights import home

    out, _, _ = trained
    (tmp_path / "weights").symlink_to(home() / "weights")  # the pretrained encoder, from the real home
    monkeypatch.setenv("SINGERID_HOME", str(tmp_path))
    shutil.copytree(out, vad_folder())
    assert installed_vad().ident == VocalActivityModel.load(out).ident
    inst = load_audio(stems_table(synth_catalogue)["path"].iloc[-1])
    voc = load_audio(stems_table(synth_catalogue)["path"].iloc[0])
    wave = np.concatenate([inst[: 6 * SR], 0.5 * inst[: 6 * SR] + voc[: 6 * SR]])  # 6 s without, 6 s with vocals
    calls = []
    real = VocalActivityModel.window_scores
    monkeypatch.setattr(VocalActivityModel, "window_scores", lambda self, *a: calls.append(a) or real(self, *a))
    audio = voiced.track_audio(wave, 6.0, separator=None)
    assert calls and audio.starts == [6.0]
    assert len(audio.voiced) <= 6 * SR  # the chosen windows, not the whole mixture
    calls.clear()
    voiced.track_audio(wave, 6.0, separator=None, vad=None)  # a stem: energy, never the model
    assert not calls


def test_track_audio_falls_back_to_energy_with_one_warning(tmp_path, monkeypatch, caplog):
    from singerid import voiced

    monkeypatch.setenv("SINGERID_HOME", str(tmp_path / "empty"))
    t = np.arange(12 * SR) / SR
    wave = np.where(t > 6, 0.3 * np.sin(2 * np.pi * 300 * t), 0.0).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="singerid.vad"):
        a = voiced.track_audio(wave, 6.0)
        b = voiced.track_audio(wave, 6.0)
    assert a.starts == b.starts == [6.0]  # the energy rule on the wave itself
    assert sum("no vocal-activity model" in r.message for r in caplog.records) == 1


def test_cache_folder_changes_with_the_vad_model(tmp_path, monkeypatch):
    from singerid.eval.cache import window_key

    monkeypatch.setenv("SINGERID_HOME", str(tmp_path))
    torch.manual_seed(0)
    a = VocalActivityModel(VadModelConfig(hidden=8, encoder="voice"), encoder=GE2EEncoder())
    b = VocalActivityModel(VadModelConfig(hidden=8, encoder="voice"), encoder=GE2EEncoder())
    assert window_key(None) == "" and window_key(a) != window_key(b) != ""
    a.save(tmp_path / "a")
    assert window_key(VocalActivityModel.load(tmp_path / "a", encoder=GE2EEncoder())) == window_key(a)


def test_cache_uses_the_vad_folder(tmp_path, monkeypatch):
    """embed_files keys its folder by the installed model: installing one never reuses energy-chosen windows."""
    from singerid.eval import cache

    seen = []
    monkeypatch.setattr(cache, "iter_track_embeddings", lambda *a, **k: seen.append(k["vad"]) or iter(()))
    torch.manual_seed(0)
    m = VocalActivityModel(VadModelConfig(hidden=8, encoder="voice"), encoder=GE2EEncoder())
    monkeypatch.setattr(cache, "resolve_vad", lambda vad, sep: m if vad == "auto" and sep is None else None)
    wav = tmp_path / "x.flac"
    wav.write_bytes(b"")
    cache.embed_files(_FakeEmbedder(), [str(wav)], tmp_path / "c", progress=False)
    cache.embed_files(_FakeEmbedder(), [str(wav)], tmp_path / "c", progress=False, vad=None)
    assert seen == [m, None]
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(names) == 2 and any(n.endswith(f"-vad{m.ident}") for n in names)


class _FakeEmbedder:
    name, dim, sample_rate, window_seconds = "fake", 4, SR, 6.0


def test_filter_tracks_and_detect_vocals_with_a_model(trained, synth_catalogue, tmp_path, capsys):
    out, _, _ = trained
    t = pd.read_csv(synth_catalogue).drop(columns=["vocals_path"])
    t.to_csv(synth_catalogue.parent / "nostems.csv", index=False)
    assert main(["filter-tracks", str(synth_catalogue.parent / "nostems.csv"), "--out", str(tmp_path / "k.csv"),
                 "--vad", str(out), "--min-vocal", "0.0", "--min-tracks", "4"]) == 0
    assert len(pd.read_csv(tmp_path / "k.csv")) == 24
    mix = pd.read_csv(synth_catalogue)["path"].iloc[0]
    assert main(["detect-vocals", str(synth_catalogue.parent / mix), "--vad", str(out)]) == 0
    assert "% vocal" in capsys.readouterr().out


def test_given_vocal_stems_never_consult_the_vocal_activity_model(tmp_path, monkeypatch):
    """The VAD model is for unseparated mixtures: rows marked stem=vocals (catalogue enrolment, analyse/sweep tables)
    keep the energy rule even where a model is installed."""
    _need_weights("voice")
    from singerid.catalogue import Catalogue
    from singerid.embed import load_embedder
    from singerid.eval.protocol import _embed_all
    from singerid.testing import vocal_stems_table

    def no_vad():
        raise AssertionError("the vocal-activity model was consulted for a given vocal stem")

    monkeypatch.setattr("singerid.voiced.installed_vad", no_vad)
    t = vocal_stems_table(tmp_path / "data", n_singers=2, songs_per_singer=2, seconds=7.0, seed=4)
    cat = Catalogue.create(tmp_path / "cat", backend="voice", separate="none")
    assert cat.enroll(t, workers=0, progress=False)["enrolled"] == len(t)
    wins = _embed_all(load_embedder("voice"), t.assign(vocal_segs=None), [], None, 0)
    assert set(wins) == set(t["path"]) and all(w.error is None for w in wins.values())


def test_a_vad_that_keeps_every_window_leaves_the_whole_track_to_read():
    """Windows chosen by a VAD are read end to end, but where it keeps every window of a short track, the embedding
    reads the whole (trimmed) track, as with energy: a 14-s clip holds two 6-s windows, and reading only them would drop
    its last 2 s (a 9-s clip, one window: a third of it)."""
    from singerid.audio import window_starts
    from singerid.voiced import track_audio

    class KeepsAll:
        def window_scores(self, wave, seconds):
            starts = window_starts(len(wave) / SR, seconds)
            return starts, np.ones(len(starts))

    class KeepsFirst:
        def window_scores(self, wave, seconds):
            starts = window_starts(len(wave) / SR, seconds)
            return starts, np.eye(len(starts))[0]

    t = np.arange(14 * SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)
    energy = track_audio(wave, 6.0, separator=None, vad=None)
    kept = track_audio(wave, 6.0, separator=None, vad=KeepsAll())
    assert kept.starts == energy.starts == [0.0, 6.0]
    np.testing.assert_array_equal(kept.voiced, energy.voiced)
    first = track_audio(wave, 6.0, separator=None, vad=KeepsFirst())
    assert first.starts == [0.0] and len(first.voiced) == 6 * SR  # only the chosen window
