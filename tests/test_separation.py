"""Separation (tensor-bundle reader, U-Net port, chunking, cache, demucs plumbing), vocal activity, filters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from singerid.cli import main
from singerid.separation.base import Separator
from singerid.separation.spleeter import SpleeterSeparator, UNet, convert_checkpoint
from singerid.separation.tf_bundle import BundleError, read_bundle, read_index, write_bundle
from singerid.vad import VadConfig, energy_activity
from singerid.voiced import TrackFilter, vocal_windows
from singerid.weights import WeightsMissing, locate

SR = 16000


def test_tensor_bundle_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv2d/kernel": rng.standard_normal((5, 5, 2, 16)).astype(np.float32),
               "conv2d/bias": np.arange(16, dtype=np.float32), "global_step": np.array(1234, np.int64),
               "a/very/long/name/with_shared/prefix_1": np.ones((3, 4), np.float64),
               "a/very/long/name/with_shared/prefix_2": np.zeros((2,), np.int32)}
    write_bundle(tmp_path / "model", tensors)
    idx = read_index(tmp_path / "model")
    assert idx["conv2d/kernel"]["shape"] == [5, 5, 2, 16] and idx["conv2d/kernel"]["dtype"] == 1
    back = read_bundle(tmp_path / "model")
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    with pytest.raises(BundleError, match="not found"):
        read_bundle(tmp_path / "model", ["missing"])
    (tmp_path / "bad.index").write_bytes(b"\0" * 100)
    with pytest.raises(BundleError, match="magic"):
        read_index(tmp_path / "bad")


def _fake_spleeter_variables(rng) -> dict[str, np.ndarray]:
    """Random variables with the names and shapes of Spleeter's 2-stem checkpoint."""
    t = {}
    enc = list(zip([2, 16, 32, 64, 128, 256], [16, 32, 64, 128, 256, 512]))
    dec = list(zip([512, 512, 256, 128, 64, 32], [256, 128, 64, 32, 16, 1]))
    bn = [o for _, o in enc] + [o for _, o in dec]
    for k in range(2):
        for j, (i, o) in enumerate(enc):
            n = "conv2d" if 7 * k + j == 0 else f"conv2d_{7 * k + j}"
            t[f"{n}/kernel"], t[f"{n}/bias"] = rng.standard_normal((5, 5, i, o)).astype(np.float32) * 0.05, np.zeros(o, np.float32)
        n = f"conv2d_{7 * k + 6}"
        t[f"{n}/kernel"], t[f"{n}/bias"] = rng.standard_normal((4, 4, 1, 2)).astype(np.float32) * 0.05, np.zeros(2, np.float32)
        for j, (i, o) in enumerate(dec):
            n = "conv2d_transpose" if 6 * k + j == 0 else f"conv2d_transpose_{6 * k + j}"
            t[f"{n}/kernel"], t[f"{n}/bias"] = rng.standard_normal((5, 5, o, i)).astype(np.float32) * 0.05, np.zeros(o, np.float32)
        for j, c in enumerate(bn):
            n = "batch_normalization" if 12 * k + j == 0 else f"batch_normalization_{12 * k + j}"
            for v, val in (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0), ("moving_variance", 1.0)):
                t[f"{n}/{v}"] = np.full(c, val, np.float32)
    return t


def test_unet_port_shapes_and_checkpoint_conversion(tmp_path):
    tensors = _fake_spleeter_variables(np.random.default_rng(0))
    write_bundle(tmp_path / "model", tensors)
    conv = convert_checkpoint(read_bundle(tmp_path / "model"))
    for stem in ("vocals", "accompaniment"):
        net = UNet().eval()
        net.load_state_dict(conv[stem], strict=True)
        with torch.no_grad():
            y = net(torch.rand(1, 2, 512, 1024))
        assert y.shape == (1, 2, 512, 1024)
    # TF [kh, kw, in, out] -> torch [out, in, kh, kw]; transposed: [kh, kw, out, in] -> [in, out, kh, kw]
    np.testing.assert_array_equal(conv["vocals"]["enc.0.weight"].numpy()[3, 1, 2, 4], tensors["conv2d/kernel"][2, 4, 1, 3])
    np.testing.assert_array_equal(conv["accompaniment"]["dec.0.weight"].numpy()[7, 5, 1, 2],
                                  tensors["conv2d_transpose_6/kernel"][1, 2, 5, 7])


class _Echo:
    """A deterministic stand-in stem model with the StemModel interface: vocals = low-passed input."""

    sample_rate = SR

    def separate(self, wave, stems=("vocals", "accompaniment")):
        k = np.ones(9) / 9
        v = np.stack([np.convolve(c, k, mode="same") for c in wave])
        return {"vocals": v, "accompaniment": wave - v}


def test_chunked_separation_equals_unchunked_and_cache_hits(tmp_path):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(SR * 50)).astype(np.float32)
    whole = Separator("echo", _Echo(), chunk_seconds=100, overlap_seconds=2).separate(wave)
    chunked = Separator("echo", _Echo(), chunk_seconds=12, overlap_seconds=2, cache_dir=tmp_path).separate(wave)
    for k in whole:
        assert chunked[k].shape == wave.shape
        np.testing.assert_allclose(chunked[k], whole[k], atol=1e-5)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    cached = Separator("echo", None, chunk_seconds=12, overlap_seconds=2, cache_dir=tmp_path)  # no model: must hit
    np.testing.assert_array_equal(cached.separate(wave)["vocals"], chunked["vocals"])


def test_spleeter_chunked_equals_unchunked_with_random_weights():
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(SR * 30)).astype(np.float32)
    torch.manual_seed(0)  # the random weights: unseeded, their draw followed whatever ran before (seed 5: 19.6 dB)
    model = SpleeterSeparator(random_init=True)
    a = Separator("s", model, chunk_seconds=60, overlap_seconds=3).separate(wave)["vocals"]
    b = Separator("s", model, chunk_seconds=14, overlap_seconds=3).separate(wave)["vocals"]
    snr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
    assert snr > 20, snr  # seams only where 512-frame segments differ


def _spleeter():
    """The real Spleeter separator (skips when its weights are not fetched)."""
    try:
        locate("spleeter")
    except WeightsMissing:
        pytest.skip("spleeter weights not fetched (singerid fetch-weights)")
    from singerid.separation import load_separator

    return load_separator("spleeter")


def test_spleeter_separates_a_synthetic_mix(synth_catalogue):
    from singerid.audio import load_audio

    sep = _spleeter()
    t = pd.read_csv(synth_catalogue)
    base = synth_catalogue.parent
    voc, acc = load_audio(base / t["vocals_path"][0]), load_audio(base / t["accompaniment_path"][0])
    est = sep.separate(voc + acc)["vocals"]
    sdr = lambda ref, x: 10 * np.log10(np.sum(ref**2) / np.sum((ref - x) ** 2))
    assert sdr(voc, est) > sdr(voc, voc + acc) + 3


def test_demucs_plumbing_with_a_small_random_model():
    from singerid.separation.demucs import DemucsModel

    class Tiny(torch.nn.Module):
        sources, samplerate, audio_channels = ["drums", "bass", "other", "vocals"], 8000, 2

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(2, 8, 5, padding=2)

        def forward(self, x):
            return self.conv(x).reshape(x.shape[0], 4, 2, -1)

    torch.manual_seed(0)
    sep = Separator("demucs", DemucsModel(Tiny(), segment_seconds=1.0))
    wave = (0.1 * np.random.default_rng(0).standard_normal(SR * 3)).astype(np.float32)
    out = sep.separate(wave)
    assert set(out) == {"vocals", "accompaniment"} and out["vocals"].shape == wave.shape
    assert np.isfinite(out["vocals"]).all() and np.abs(out["vocals"]).max() > 0


def test_energy_vad_on_synthetic_stems():
    t = np.arange(12 * SR) / SR
    voc = np.where((t > 3) & (t < 9), 0.3 * np.sin(2 * np.pi * 300 * t), 0.0).astype(np.float32)
    acc = (0.1 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    starts, flags, _ = energy_activity(voc, voc + acc, VadConfig(window=3.0))
    assert starts == [0.0, 3.0, 6.0, 9.0]
    assert list(flags) == [False, True, True, False]
    assert vocal_windows(voc, voc + acc, 3.0) == [3.0, 6.0]
    assert vocal_windows(np.zeros_like(voc) + 1e-9, acc, 6.0) in ([0.0], [6.0])  # never empty


def test_track_filter():
    t = pd.DataFrame({"path": list("abcde"), "singer": ["x", "x", "y", "y", "z"]})
    frac = {"a": 0.9, "b": 0.8, "c": 0.9, "d": 0.3, "e": 1.0}
    assert list(TrackFilter(0.75, 2).apply(t, frac)["path"]) == ["a", "b"]
    assert list(TrackFilter(0.5, 1).apply(t, frac)["path"]) == ["a", "b", "c", "e"]


def test_missing_spleeter_weights_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SINGERID_HOME", str(tmp_path))
    monkeypatch.setattr("singerid.weights._installed_files", lambda name: None)
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, (0.1 * np.sin(np.arange(SR * 2) / 5)).astype(np.float32), SR)
    assert main(["separate", str(wav), "--out", str(tmp_path / "o")]) == 2
    assert "singerid fetch-weights" in capsys.readouterr().err


def test_filter_tracks_command_with_given_stems(synth_catalogue, tmp_path):
    from singerid.data.manifest import load_tracks

    # stems given: energy of the stem (the vocal-activity model's variant is in test_vad.py)
    out = tmp_path / "kept.csv"
    assert main(["filter-tracks", str(synth_catalogue), "--out", str(out), "--min-vocal", "0.5"]) == 0
    kept = load_tracks(out)
    assert len(kept) == 24 and (kept["vocal_fraction"].astype(float) >= 0.5).all()
    assert all(isinstance(v, list) and v for v in kept["vocal_segs"])


def test_merge_regions_widens_clips_and_merges_neighbours():
    from singerid.separation.base import merge_regions

    regions = merge_regions([30.0, 0.0, 6.0, 60.0], 6.0, 1.0, 64.0)
    assert regions == [(0.0, 13.0, [1, 2]), (29.0, 37.0, [0]), (59.0, 64.0, [3])]


def test_region_separation_equals_full_separation_inside_the_windows():
    """A context-free model: separating windows alone gives exactly the full track's stem inside them."""
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(SR * 90)).astype(np.float32)
    sep = Separator("echo", _Echo(), chunk_seconds=200, overlap_seconds=2)
    starts = [0.0, 6.0, 42.0, 84.0]
    full = sep.separate(wave)["vocals"]
    from singerid.audio import cut_windows

    np.testing.assert_allclose(sep.separate_windows(wave, starts, 6.0), cut_windows(full, starts, 6.0), atol=1e-6)


def test_region_separation_with_spleeter_matches_full_separation(synth_catalogue):
    """The real U-Net sees less context in a region than in the whole track: same stems within tolerance."""
    from singerid.audio import cut_windows, load_audio

    sep = _spleeter()
    t = pd.read_csv(synth_catalogue)
    base = synth_catalogue.parent
    mix = np.concatenate([load_audio(base / p) for p in t["path"][:4]])  # 28 s
    starts = [1.0, 14.0, 21.0]
    full = cut_windows(sep.separate(mix)["vocals"], starts, 6.0)
    part = sep.separate_windows(mix, starts, 6.0)
    agreement = [10 * np.log10(np.sum(f**2) / np.sum((f - p) ** 2)) for f, p in zip(full, part)]
    assert min(agreement) > 12, agreement


def test_window_budget_separates_only_what_it_needs(monkeypatch):
    """A long track with a budget: only spread windows (with context) reach the model, and vocal ones are kept."""
    from singerid.voiced import spread, track_audio

    assert spread([0, 6, 12, 18, 24], 3) == [0, 12, 24]
    assert spread([0, 6], 3) == [0, 6]
    calls = []

    class Counting(_Echo):
        def separate(self, wave, stems=("vocals", "accompaniment")):
            calls.append(wave.shape[1])
            return super().separate(wave, stems)

    rng = np.random.default_rng(4)
    n = SR * 300  # 5 minutes: 50 candidate windows; vocals (here: the low band) only in the second half
    wave = np.zeros(n, np.float32)
    wave[n // 2 :] = np.convolve(rng.standard_normal(n // 2), np.ones(9) / 9, mode="same")
    wave += 0.001 * rng.standard_normal(n).astype(np.float32)
    sep = Separator("echo", Counting(), chunk_seconds=400, overlap_seconds=2)
    audio = track_audio(wave, 6.0, separator=sep, budget=6)
    starts, windows = audio.starts, audio.windows
    assert 3 <= len(starts) <= 6 and all(s >= 150 for s in starts), starts
    assert windows.shape == (len(starts), 6 * SR)
    assert sum(calls) <= 12 * 8 * SR  # at most twice the budget of 8-s regions, never the whole 300 s
    calls.clear()
    assert len(audio.voiced) <= len(starts) * 6 * SR  # the voiced audio: the chosen windows only
    starts_all = track_audio(wave, 6.0, separator=sep, budget=None).starts
    assert calls == [n] and len(starts_all) >= 20


def test_a_clean_vocal_is_not_replaced_by_its_separated_copy():
    """Separation that removes almost nothing means the input was a vocal stem: the original audio is used."""
    from singerid.voiced import track_audio, was_clean

    rng = np.random.default_rng(5)
    t = np.arange(SR * 8) / SR
    voice = (sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450), 1)) * 0.3).astype(np.float32)
    noise = (0.5 * rng.standard_normal(SR * 8)).astype(np.float32)
    sep = Separator("echo", _Echo(), chunk_seconds=100, overlap_seconds=2)  # "vocals" = the low band
    assert was_clean(voice, sep.separate(voice)["vocals"])
    assert not was_clean(voice + noise, sep.separate(voice + noise)["vocals"])
    clean = track_audio(voice, 6.0, separator=sep)
    np.testing.assert_allclose(clean.windows[0], voice[: 6 * SR] / np.abs(voice[: 6 * SR]).max(), atol=1e-6)
    mixed = track_audio(voice + noise, 6.0, separator=sep)
    assert not np.allclose(mixed.windows[0] * np.abs(voice + noise)[: 6 * SR].max(), (voice + noise)[: 6 * SR], atol=1e-3)


def test_separate_writes_only_the_asked_stems(tmp_path, monkeypatch):
    """`separate --stems accompaniment`: a folder of accompaniments only, usable as `train --instrumentals DIR`."""
    import soundfile as sf

    class Halves:
        def separate(self, wave):
            return {"vocals": wave / 2, "accompaniment": wave / 2}

    monkeypatch.setattr("singerid.separation.load_separator", lambda *a, **k: Halves())
    wav = tmp_path / "song.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(SR * 2) / 5)).astype(np.float32), SR)
    assert main(["separate", str(wav), "--out", str(tmp_path / "acc"), "--stems", "accompaniment"]) == 0
    assert sorted(p.name for p in (tmp_path / "acc").iterdir()) == ["song_accompaniment.flac"]
    assert main(["separate", str(wav), "--out", str(tmp_path / "both")]) == 0
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["song_accompaniment.flac", "song_vocals.flac"]
