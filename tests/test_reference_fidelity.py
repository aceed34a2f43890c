"""The `voice` preset is Resemblyzer's encoder used exactly as Resemblyzer uses it: singerid's track embedding of a
file and `embed_utterance(preprocess_wav(file))` (the reference package's own code, from its wheel) agree to a cosine
of at least 0.99 on every file, whatever its level, silences, channels or sample rate."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from singerid.embed import iter_track_embeddings, load_embedder
from singerid.testing.synth import Voice, sing
from singerid.weights import WeightsMissing, locate, reference_code

SR = 16000


@pytest.fixture(scope="module")
def reference():
    """path → the reference embedding (Resemblyzer's preprocess_wav + embed_utterance)."""
    try:
        weights = locate("voice") / "pretrained.pt"
    except WeightsMissing:
        pytest.skip("voice weights not fetched (singerid fetch-weights)")
    try:
        import resemblyzer
    except ImportError:
        path = reference_code("voice")
        if path is None:
            pytest.skip("no Resemblyzer reference code: run `singerid fetch-weights`")
        pytest.importorskip("librosa")
        sys.path.insert(0, str(path))
        try:
            import resemblyzer
        finally:
            sys.path.remove(str(path))
    enc = resemblyzer.VoiceEncoder("cpu", verbose=False, weights_fpath=weights)
    return lambda p: enc.embed_utterance(resemblyzer.preprocess_wav(p))


def ours(paths: list[str]) -> list[np.ndarray]:
    emb = load_embedder("voice")
    out = list(iter_track_embeddings(emb, paths, workers=0, progress=False, separator=None, vad=None))
    assert [te.error for te in out] == [None] * len(paths)
    return [te.track for te in out]


def synthetic_files(folder) -> list[str]:
    """Sung phrases at several levels, with long rests, stereo at 44.1 kHz, and a quiet one."""
    rng = np.random.default_rng(7)
    paths = []
    for i, (gain_db, rests, rate, channels) in enumerate(
        [(0, 0, SR, 1), (-40, 0, SR, 1), (-12, 3, SR, 1), (-25, 2, 44100, 2), (-3, 1, 22050, 1)]
    ):
        v = Voice.random(f"s{i}", rng)
        parts = [sing(v, 3.0, rng)]
        for _ in range(rests):
            parts += [np.zeros(int(rng.uniform(1.0, 2.5) * SR), np.float32), sing(v, 2.5, rng)]
        x = np.concatenate(parts) * 10 ** (gain_db / 20) / 0.5
        if rate != SR:
            import soxr

            x = soxr.resample(x, SR, rate)
        x = np.stack([x, 0.7 * x], axis=1) if channels == 2 else x
        p = folder / f"s{i}.flac"
        sf.write(p, x, rate)
        paths.append(str(p))
    return paths


def assert_faithful(paths: list[str], reference) -> None:
    cos = np.array([float(np.dot(a, reference(p))) for a, p in zip(ours(paths), paths)])
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.99, f"{paths[worst]}: cosine {cos[worst]:.4f} to the reference (mean {cos.mean():.4f})"


def test_voice_track_embedding_is_the_reference_on_synthetic_singing(tmp_path, reference):
    assert_faithful(synthetic_files(tmp_path), reference)


@pytest.mark.devdata
def test_voice_track_embedding_is_the_reference_on_every_dev_clip(dev_data, reference):
    import pandas as pd

    t = pd.read_csv(dev_data / "tracks.csv")
    assert_faithful([str(dev_data / p) for p in t[t["stem"].isin(["vocals", "speech"])]["path"]], reference)
