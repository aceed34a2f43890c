"""The musicnn port: the reference checkpoint's layout loads strictly, and with the wheel's weights the port gives the
reference TensorFlow graph's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from singerid.models.musicnn import CHECKPOINT, TAGS, MusiCNN, convert_checkpoint
from singerid.separation.tf_bundle import read_bundle, write_bundle

# The trainable variables of the reference graph (musicnn/models.py, MTT_musicnn) and their TF shapes.
REFERENCE = {
    "conv2d": ([7, 38, 1, 204], 204), "conv2d_1": ([7, 67, 1, 204], 204), "conv2d_2": ([128, 1, 1, 51], 51),
    "conv2d_3": ([64, 1, 1, 51], 51), "conv2d_4": ([32, 1, 1, 51], 51), "conv2d_5": ([7, 561, 1, 64], 64),
    "conv2d_6": ([7, 64, 1, 64], 64), "conv2d_7": ([7, 64, 1, 64], 64), "dense": ([1506, 200], 200),
    "dense_1": ([200, 50], 50),
}
BATCH_NORMS = [1, 204, 204, 51, 51, 51, 64, 64, 64, 1506, 200]


def reference_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = {}
    for name, (kernel, bias) in REFERENCE.items():
        t[f"{name}/kernel"] = rng.normal(0, 0.05, kernel).astype(np.float32)
        t[f"{name}/bias"] = rng.normal(0, 0.05, bias).astype(np.float32)
    for i, n in enumerate(BATCH_NORMS):
        name = "batch_normalization" + (f"_{i}" if i else "")
        t[f"{name}/gamma"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        t[f"{name}/beta"] = rng.normal(0, 0.1, n).astype(np.float32)
        t[f"{name}/moving_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        t[f"{name}/moving_variance"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    return t


def test_the_reference_checkpoint_layout_loads_strictly(tmp_path):
    tensors = reference_tensors(np.random.default_rng(0))
    (tmp_path / CHECKPOINT).mkdir()
    write_bundle(f"{tmp_path}/{CHECKPOINT}", tensors)
    model = MusiCNN()
    model.load_state_dict(convert_checkpoint(read_bundle(f"{tmp_path}/{CHECKPOINT}")))  # strict
    trainable = sum(int(np.prod(v.shape)) for k, v in tensors.items() if not k.endswith(("moving_mean", "moving_variance")))
    assert sum(p.numel() for p in model.parameters()) == trainable
    model.eval()
    with torch.no_grad():
        for seconds in (3.0, 5.0):  # trained on 3-s patches; convolutional in time, so any length ≥ 2 s reads
            out = model(torch.randn(2, int(16000 * seconds)) * 0.1)
            assert out["taggram"].shape == (2, len(TAGS)) and out["penultimate"].shape == (2, 200)
            assert out["max_pool"].shape == out["mean_pool"].shape == (2, 753)
            assert ((out["taggram"] >= 0) & (out["taggram"] <= 1)).all() and out["penultimate"].isfinite().all()


# MTT_musicnn's outputs for `synthetic_wave()` from the reference code (musicnn 0.1.0's models.py on TensorFlow
# 2.21 with tf_keras, its log-mel from librosa 0.11 with pad_mode="reflect"), rounded to 5 decimals.
REFERENCE_TAGGRAM = [
    0.00107, 0.00165, 0.00445, 0.28625, 0.00096, 0.00306, 0.15777, 8e-05, 0.02465, 0.00022, 0.01053, 0.02975, 0.00016,
    0.04122, 0.05662, 0.04496, 0.00016, 0.02666, 0.01554, 0.01597, 0.03731, 0.00661, 1e-05, 0.00095, 0.00076, 0.0001,
    0.03395, 0.00552, 0.00616, 0.00302, 0.00127, 0.0, 3e-05, 0.00672, 0.00014, 0.00104, 0.02977, 0.0042, 0.01287,
    0.00635, 0.00679, 0.0111, 3e-05, 0.0, 0.00468, 0.02916, 0.00022, 1e-05, 0.00582, 0.00066,
]
REFERENCE_PENULTIMATE = [0.63085, 0.86411, -0.06667, 0.8957, -0.0787, 1.14316, -0.10575, -0.2253, -0.02419, -0.63508]


def synthetic_wave() -> np.ndarray:
    """3 s: a vibrato 220-Hz tone with 5 harmonics, amplitude-modulated at 2 Hz, plus a faint 3-kHz tone."""
    t = np.arange(48000) / 16000
    w = sum(np.sin(2 * np.pi * h * 220 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / h for h in range(1, 6))
    return (w * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32) / 3


def test_the_port_gives_the_reference_outputs():
    from singerid.models.musicnn import pretrained_musicnn
    from singerid.weights import WeightsMissing

    try:
        model = pretrained_musicnn()
    except WeightsMissing:
        pytest.skip("musicnn weights not fetched (singerid fetch-weights)")
    with torch.no_grad():
        out = model(torch.from_numpy(synthetic_wave())[None])
    np.testing.assert_allclose(out["taggram"][0].numpy(), REFERENCE_TAGGRAM, atol=2e-4)
    np.testing.assert_allclose(out["penultimate"][0, :10].numpy(), REFERENCE_PENULTIMATE, atol=2e-3)
