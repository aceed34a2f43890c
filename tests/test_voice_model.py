"""The `voice` preset: Resemblyzer's pretrained GE2E as a trainable model (weights from the Resemblyzer wheel via
`singerid fetch-weights`), its track-level embedding, and the learned scoring backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from singerid.models.ge2e import N_MELS, partial_starts, slaney_mel_filterbank
from singerid.weights import WeightsMissing, locate


def _need_voice():
    try:
        locate("voice")
    except WeightsMissing:
        pytest.skip("voice weights not fetched (singerid fetch-weights)")


def test_slaney_filterbank_and_partials():
    fb = slaney_mel_filterbank()
    assert fb.shape == (N_MELS, 201) and (fb >= 0).all()
    assert (fb.sum(axis=1) > 0).all()
    assert partial_starts(96000) == [0, 77, 154, 231, 308, 385, 462]  # 6 s → 7 partials of 1.6 s


def test_missing_weights_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SINGERID_HOME", str(tmp_path))
    monkeypatch.setattr("singerid.weights._installed_files", lambda name: None)
    with pytest.raises(WeightsMissing, match="singerid fetch-weights"):
        locate("voice")


def test_voice_preset_loads_the_pretrained_encoder_and_equals_the_backend():
    """The preset's encoder holds the wheel's GE2E weights, its untrained embedding is the `voice` backend's, and one
    partial computed by hand from the raw checkpoint (torch.nn.LSTM, Resemblyzer's recipe) gives the same vector."""
    _need_voice()
    from singerid.embed import load_embedder
    from singerid.models import create_model

    raw = torch.load(locate("voice") / "pretrained.pt", map_location="cpu", weights_only=True)["model_state"]
    model = create_model("voice").eval()
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, raw[k])
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal((2, 96000))).astype(np.float32)
    backend = load_embedder("voice")
    with torch.no_grad():
        np.testing.assert_allclose(backend.embed_windows(wave), model.embed(torch.from_numpy(wave)).numpy(), atol=1e-6)
        # by hand: mel of the first 1.6 s (the wave raised to -30 dBFS), LSTM, ReLU(Linear), L2
        x = torch.from_numpy(wave[:1])
        x = x * torch.clamp(10 ** (-30 / 20) / x.square().mean().sqrt(), min=1.0)
        spec = torch.stft(x, 400, 160, window=torch.hann_window(400), center=True, pad_mode="constant", return_complex=True)
        mel = (torch.from_numpy(slaney_mel_filterbank()) @ spec.abs() ** 2).transpose(1, 2)[:, :160]
        lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        lstm.load_state_dict({k[5:]: v for k, v in raw.items() if k.startswith("lstm.")})
        _, (h, _) = lstm(mel)
        by_hand = torch.nn.functional.normalize(torch.relu(h[-1] @ raw["linear.weight"].T + raw["linear.bias"]), dim=-1)
        torch.testing.assert_close(model.encoder.partials(x)[:, 0], by_hand, atol=1e-5, rtol=1e-4)


def test_track_embedding_averages_every_partial_of_the_prepared_audio():
    """A 20-s wave's track embedding is the mean of all the partials of the wave as the preset prepares it (raised
    to -30 dBFS, long silences removed by webrtcvad), read at that level."""
    _need_voice()
    from singerid.audio.prepare import prepare
    from singerid.embed import load_embedder

    emb = load_embedder("voice")
    rng = np.random.default_rng(1)
    long = (0.003 * rng.standard_normal(320000)).astype(np.float32)
    long[100000:180000] = 0  # a 5-s silence the preparation removes
    prepared = prepare(long, emb.preprocess)
    assert 0 < len(prepared) < len(long) and np.sqrt(np.mean(prepared**2)) > 0.03  # trimmed, raised
    with torch.no_grad():
        parts = emb.model.encoder.partials(torch.from_numpy(prepared)[None], gain=False)[0]
    want = torch.nn.functional.normalize(parts.mean(dim=0), dim=0).numpy()
    np.testing.assert_allclose(emb.embed_track(long), want, atol=1e-5)


def test_voice_backend_tells_synthetic_singers_apart(synth_catalogue):
    _need_voice()
    import pandas as pd

    from singerid.embed import load_embedder
    from singerid.voiced import file_audio

    emb = load_embedder("voice")
    t = pd.read_csv(synth_catalogue)
    vecs = np.stack([emb.embed_track(file_audio(str(synth_catalogue.parent / p)).voiced) for p in t["vocals_path"]])
    assert vecs.shape == (len(t), 256)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    sim = vecs @ vecs.T
    s = t["singer"].to_numpy()
    same = (s[:, None] == s[None]) & ~np.eye(len(s), dtype=bool)
    assert sim[same].mean() > sim[s[:, None] != s[None]].mean() + 0.02


def test_unknown_backend_names_the_known_ones():
    from singerid.embed import load_embedder

    with pytest.raises(ValueError, match="voice"):
        load_embedder("tiny")  # a preset without pretrained weights is not a backend


def test_scoring_backend_whitens_within_singer_spread_and_round_trips(tmp_path):
    """WCCN: a direction that varies only within singers (e.g. real vs cloned) is damped; the fitted backend is saved
    into a checkpoint folder and loaded back identical."""
    from singerid.models import create_model, save_model
    from singerid.models.backend import BackendConfig, ScoringBackend

    rng = np.random.default_rng(2)
    centres = rng.standard_normal((6, 8))
    labels = np.repeat(np.arange(6), 20)
    x = centres[labels] + 0.1 * rng.standard_normal((120, 8))
    x[:, 0] += 3.0 * rng.choice([-1.0, 1.0], size=120)  # a nuisance axis, within every singer
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for kind in ("wccn", "lda"):
        b = ScoringBackend.fit(x, labels, BackendConfig(kind=kind, shrink=0.05))
        y = b.apply(x)
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
        same = labels[:, None] == labels[None]
        gap_after = (y @ y.T)[same].mean() - (y @ y.T)[~same].mean()
        gap_before = (x @ x.T)[same].mean() - (x @ x.T)[~same].mean()
        assert gap_after > gap_before + 0.1, (kind, gap_before, gap_after)
    folder = save_model(tmp_path / "ckpt", create_model("tiny"))
    b.save(folder)
    back = ScoringBackend.load(folder)
    np.testing.assert_array_equal(back.apply(x), b.apply(x))
    assert back.info["kind"] == "lda"
    with pytest.raises(ValueError, match="2 singers"):
        ScoringBackend.fit(x[:5], np.zeros(5))


def test_asnorm_corrects_a_hub_centroid_and_round_trips(tmp_path):
    """AS-norm: an enrolled centroid close to the whole cohort (a hub: a voice like everybody's) wins raw cosines it
    should not; normalised against the training singers' cohort, each query's own singer ranks first. The cohort
    is fitted (each training singer's centroid) and kept in the checkpoint."""
    from singerid.models import create_model, save_model
    from singerid.models.backend import BackendConfig, ScoringBackend, _l2

    rng = np.random.default_rng(3)
    eye = np.eye(8)
    cohort = _l2(eye[0] + 0.15 * rng.standard_normal((10, 8)))  # training singers share a common direction e0
    backend = ScoringBackend(np.zeros(8), np.eye(8), {"asnorm_k": 5}, cohort)
    hub = eye[0]
    singers = _l2(0.5 * eye[0] + eye[1:5])  # [4, 8]
    centroids = np.vstack([hub[None], singers])  # [5, 8]: 0 = the hub
    queries = _l2(eye[0] + 0.5 * eye[1:5])  # query i: singer i, sung "like everybody"
    cos = queries @ centroids.T
    assert (cos.argmax(axis=1) == 0).all()  # raw cosine: the hub takes them all
    normed = backend.score(queries, centroids)
    np.testing.assert_array_equal(normed.argmax(axis=1), np.arange(1, 5))
    mq = np.sort(queries @ cohort.T, axis=1)[:, -5:]
    mc = np.sort(centroids @ cohort.T, axis=1)[:, -5:]
    manual = 0.5 * ((cos - mq.mean(1)[:, None]) / mq.std(1)[:, None] + (cos - mc.mean(1)[None]) / mc.std(1)[None])
    np.testing.assert_allclose(normed, manual, rtol=1e-4, atol=1e-4)

    labels = np.repeat(np.arange(6), 10)
    x = _l2(rng.standard_normal((6, 8))[labels] + 0.1 * rng.standard_normal((60, 8)))
    fitted = ScoringBackend.fit(x, labels, BackendConfig(kind="wccn", asnorm_k=3))
    y = fitted.apply(x)
    np.testing.assert_allclose(fitted.cohort, _l2(np.stack([y[labels == c].mean(0) for c in range(6)])), atol=1e-5)
    folder = save_model(tmp_path / "ckpt", create_model("tiny"))
    fitted.save(folder)
    back = ScoringBackend.load(folder)
    np.testing.assert_allclose(back.score(y[:7], y[7:12]), fitted.score(y[:7], y[7:12]), rtol=1e-5)
    assert back.info["asnorm_k"] == 3
    plain = ScoringBackend.fit(x, labels, BackendConfig(kind="wccn", asnorm_k=0))
    assert plain.cohort is None
    np.testing.assert_allclose(plain.score(y[:7], y[7:12]), y[:7] @ y[7:12].T, rtol=1e-6)


class _KeepAll:
    """A separator that returns its input: every remixed view keeps the accompaniment."""

    name = "keep-all"

    def separate(self, wave):
        return {"vocals": wave}

    def separate_windows(self, wave, starts, seconds, context=1.0):
        from singerid.audio import cut_windows

        return cut_windows(wave, starts, seconds)


def test_backend_fits_on_remixed_views_too(synth_catalogue, monkeypatch):
    """With instrumentals, every singing row is also remixed onto one (seeded) and separated again: the views differ
    from the clean ones and double the embeddings the backend is fitted on."""
    _need_voice()
    import pandas as pd

    from singerid.audio import load_audio
    from singerid.data.manifest import load_tracks
    from singerid.embed import load_embedder
    from singerid import scoring as recipe

    tracks = load_tracks(synth_catalogue)
    tracks = tracks[tracks["singer"].isin(sorted(tracks["singer"].unique())[:3])]
    emb = load_embedder("voice")
    base = synth_catalogue.parent
    paths = [str(base / p) for p in tracks["vocals_path"][:2]]
    inst = [load_audio(str(base / p)) for p in tracks["accompaniment_path"][:2]]
    views, = recipe.remixed_embeddings(emb, paths, inst, [_KeepAll()], progress=False)
    again, = recipe.remixed_embeddings(emb, paths, inst, [_KeepAll()], progress=False)
    for path, (wins, track), (_, track2) in zip(paths, views, again):
        clean = emb.embed_track(load_audio(path))
        assert wins.shape[1] == emb.dim and 0.3 < float(track @ clean) < 0.999  # remixed: near, not the same
        np.testing.assert_array_equal(track, track2)  # seeded
    two, = recipe.remixed_embeddings(emb, paths, inst, [_KeepAll()], progress=False, remixes=2)
    assert len(two) == 2 * len(paths)  # file by file: the first file's two remixes, then the second's
    np.testing.assert_array_equal(two[0][1], views[0][1])  # the first draw is the single remix's
    assert float(two[0][1] @ two[1][1]) < 0.9999  # the second is another draw
    insts = pd.DataFrame({"path": [str(base / p) for p in tracks["accompaniment_path"][:2]]})
    plain = recipe.fit_backend(emb, tracks, progress=False, workers=0)
    remixed = recipe.fit_backend(emb, tracks, progress=False, workers=0, instrumentals=insts, separator=_KeepAll())
    assert remixed.info["n"] > 1.8 * plain.info["n"] and remixed.info["classes"] == plain.info["classes"] == 3
    assert recipe.fit_backend(emb, tracks, progress=False, workers=0, instrumentals=insts).info["n"] == plain.info["n"]
    thrice = recipe.fit_backend(emb, tracks, progress=False, workers=0, instrumentals=insts, separator=_KeepAll(),
                                remixes=3)
    assert thrice.info["n"] > 3.5 * plain.info["n"] and thrice.info["classes"] == 3

    class _Counts(_KeepAll):
        calls = 0

        def separate_windows(self, wave, starts, seconds, context=1.0):
            self.calls += 1
            return super().separate_windows(wave, starts, seconds, context)

        def separate(self, wave):
            self.calls += 1
            return super().separate(wave)

    student = load_embedder("voice")
    student.reads_mixtures = True  # a distilled student: remixes reach it as queries do, unseparated
    raw = recipe.fit_backend(student, tracks, progress=False, workers=0, instrumentals=insts)
    assert raw.info["n"] == remixed.info["n"]
    second = _Counts()  # and through its catalogue's second view: the same remixes read twice, made once
    decoded, load = [], recipe.load_audio
    monkeypatch.setattr(recipe, "load_audio", lambda path, *a, **k: decoded.append(path) or load(path, *a, **k))
    both = recipe.fit_backend(student, tracks, progress=False, workers=0, instrumentals=insts, separator=second)
    rows = list(recipe.backend_rows(tracks, True)["path"])
    assert second.calls == len(rows)
    assert sorted(p for p in decoded if p in rows) == sorted(rows)
    assert both.info["n"] == 2 * remixed.info["n"] - plain.info["n"]
