"""Front end values, model shapes, presets, checkpoints and the NT-Xent loss against numpy."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from singerid.features import LogMel, MelConfig, mel_filterbank
from singerid.losses import nt_xent
from singerid.models import create_model, list_models, load_model, save_model
from singerid.models.factory import get_config


def test_logmel_shape_and_values_match_numpy_for_a_sine():
    cfg = MelConfig()
    sr, f = 16000, 1000.0
    t = np.arange(6 * sr) / sr
    x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    mel = LogMel(cfg)(torch.from_numpy(x)[None])
    assert mel.shape == (1, 128, 240)
    # direct numpy: centre-padded (reflect) frames, periodic Hann, |rfft|^2, same filterbank
    pad = np.pad(x, (400, 400), mode="reflect")
    frame = pad[400 * 100 : 400 * 100 + 800] * np.hanning(801)[:-1]
    power = np.abs(np.fft.rfft(frame)) ** 2
    fb = mel_filterbank(cfg).numpy()
    ref = np.log(power @ fb + 1e-10)
    got = mel[0, :, 100].numpy()
    loud = ref > np.log(1e-3)  # float32 leakage dominates bands ~200 dB below the tone
    assert loud.sum() > 3
    np.testing.assert_allclose(got[loud], ref[loud], rtol=1e-3, atol=1e-3)
    assert (got[~loud] < np.log(1e-2)).all()
    # the loudest band is the one whose filter peaks nearest 1 kHz
    peak_band = int(mel[0, :, 100].argmax())
    centres = np.linspace(0, 8000, 401)[fb.argmax(axis=0)]
    assert abs(centres[peak_band] - f) < 60


def test_mel_filterbank_is_htk_triangles():
    fb = mel_filterbank(MelConfig())
    assert fb.shape == (401, 128)
    assert float(fb.min()) >= 0 and float(fb.max()) <= 1.0 + 1e-6
    assert (fb.sum(0) > 0).all()  # no empty band at 128 mels / 401 bins


def test_presets_and_paper_shapes():
    assert {"paper", "tiny"} <= set(list_models())
    cfg = get_config("paper")
    assert cfg.encoder == {"patch": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0, "embed_dim": 2048}
    assert cfg.projector == [2048, 1024, 1024, 2048]
    m = create_model("paper").eval()
    n_params = sum(p.numel() for p in m.encoder.parameters())
    assert 20e6 < n_params < 25e6  # ViT-S/16 blocks + patch/pos/head
    with torch.inference_mode():
        x = torch.randn(2, 96000)
        e, z = m.embed(x), m(x)
    assert e.shape == (2, 2048) and z.shape == (2, 2048)
    np.testing.assert_allclose(e.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(z.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    assert m.encoder.grid == (8, 15)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("huge")


def test_checkpoint_roundtrip_and_validation(tmp_path):
    m = create_model("tiny", seed=3).eval()
    save_model(tmp_path / "ck", m, {"note": "x"})
    m2 = load_model(tmp_path / "ck")
    x = torch.randn(3, 96000)
    with torch.inference_mode():
        torch.testing.assert_close(m.embed(x), m2.embed(x))
    load_model(tmp_path / "ck" / "model.safetensors")  # the file itself works too
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["model"]["encoder"]["dim"] = 32  # architecture no longer matches the weights
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((ValueError, RuntimeError)):
        load_model(tmp_path / "ck")
    cfg["format"] = "something-else"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a singerid-checkpoint"):
        load_model(tmp_path / "ck")


def _nt_xent_numpy(z: np.ndarray, t: float) -> float:
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z)
    total = 0.0
    for i in range(n):
        j = i + 1 if i % 2 == 0 else i - 1
        s = np.array([z[i] @ z[k] / t for k in range(n)])
        denom = sum(np.exp(s[k]) for k in range(n) if k != i)
        total += -np.log(np.exp(s[j]) / denom)
    return total / n


@pytest.mark.parametrize("b,d", [(2, 4), (8, 16), (16, 128)])
def test_nt_xent_matches_numpy(b, d):
    rng = np.random.default_rng(b)
    z = rng.standard_normal((2 * b, d)).astype(np.float64)
    got = nt_xent(torch.from_numpy(z), 0.2)["contrastive_loss"].item()
    assert got == pytest.approx(_nt_xent_numpy(z, 0.2), rel=1e-6)


def test_nt_xent_perfect_pairs_beat_random():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 32))
    perfect = torch.from_numpy(np.repeat(base, 2, axis=0))
    random = torch.from_numpy(rng.standard_normal((16, 32)))
    assert nt_xent(perfect)["contrastive_loss"] < nt_xent(random)["contrastive_loss"]
    assert nt_xent(perfect)["pair_accuracy"] == 1.0
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(5, 3))
