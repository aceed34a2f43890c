"""The pretrained `voice` backend (weights from the Resemblyzer wheel via `singerid fetch-weights`)."""
from __future__ import annotations

import numpy as np
import pytest

from singerid.backends.voice import N_MELS, partial_starts, slaney_mel_filterbank
from singerid.weights import WeightsMissing, locate


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


def test_voice_backend_tells_synthetic_singers_apart(synth_catalogue):
    try:
        locate("voice")
    except WeightsMissing:
        pytest.skip("voice weights not fetched (singerid fetch-weights)")
    import pandas as pd

    from singerid.backends import load_embedder
    from singerid.embed import track_windows

    emb = load_embedder("voice")
    t = pd.read_csv(synth_catalogue)
    vecs = np.concatenate([emb.embed_windows(track_windows(str(synth_catalogue.parent / p))[1]) for p in t["vocals_path"]])
    assert vecs.shape == (len(t), 256)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    sim = vecs @ vecs.T
    s = t["singer"].to_numpy()
    same = (s[:, None] == s[None]) & ~np.eye(len(s), dtype=bool)
    assert sim[same].mean() > sim[s[:, None] != s[None]].mean() + 0.02
