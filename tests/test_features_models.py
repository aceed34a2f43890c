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
    assert {"paper", "paper-v0", "tiny"} <= set(list_models())
    cfg = get_config("paper")
    assert {k: cfg.encoder[k] for k in ("patch", "dim", "depth", "heads", "mlp_ratio", "embed_dim")} == \
        {"patch": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0, "embed_dim": 2048}
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


def _reference_parameter_count(dim=384, depth=12, mlp=4, in_ch=2, patch=16, n_mels=128, n_frames=240, feature=2048,
                               hidden=1024, proj=2048) -> int:
    """The reference model (deezer/real-cloned-singer-id foundation/model.py TrainingWrapper), counted by hand:
    timm ViT-S/16 blocks (qkv with bias), a 2-channel conv patch embedding, CLS + learned positions, no final norm,
    Linear + GELU to 2048, projector Linear-BN-ReLU ×2 then a bias-free Linear."""
    n_patches = (n_mels // patch) * (n_frames // patch)  # 8 × 15 = 120
    patch_embed = in_ch * patch * patch * dim + dim
    tokens = dim + (n_patches + 1) * dim  # CLS + positions
    block = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (dim * mlp * dim + mlp * dim) + (mlp * dim * dim + dim)
    feature_layer = dim * feature + feature
    projector = (feature * hidden + hidden) + 2 * hidden + (hidden * hidden + hidden) + 2 * hidden + hidden * proj
    return patch_embed + tokens + depth * block + feature_layer + projector


def test_paper_preset_is_the_reference_model():
    m = create_model("paper", seed=0).eval()
    enc = m.encoder
    assert enc.patch_embed.in_channels == 2 and enc.patch_embed.kernel_size == (16, 16) and enc.grid == (8, 15)
    assert enc.pos_embed.shape == (1, 121, 384) and enc.cls_token.shape == (1, 1, 384)
    assert isinstance(enc.norm, torch.nn.Identity) and not enc.standardise  # no final norm, no input standardisation
    last = m.projector.net[-1]
    assert isinstance(last, torch.nn.Linear) and last.bias is None and last.out_features == 2048
    assert [type(x).__name__ for x in m.projector.net] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert m.cfg.head_input == "raw"
    n = sum(p.numel() for p in m.parameters())
    assert n == _reference_parameter_count() == 27_574_912
    # trunc-normal(0.02) init of the block Linears (timm's: bounds ±2 absolute), drawn per block; biases zero
    w = [b.linear1.weight.detach() for b in enc.blocks.layers]
    assert all(abs(float(x.std()) - 0.02) < 1e-3 for x in w)
    assert not torch.equal(w[0], w[1]) and float(enc.blocks.layers[0].self_attn.in_proj_bias.abs().max()) == 0.0
    # mono is fed as two identical channels; an explicit stereo pair of the same signal gives the same embedding
    x = torch.randn(2, 96000)
    with torch.inference_mode():
        mono, stereo = m.embed(x), m.embed(torch.stack([x, x], dim=1))
    torch.testing.assert_close(mono, stereo, rtol=1e-4, atol=1e-5)
    # the previous preset stays loadable under its own name, with its own (1-channel, final norm, biased) structure
    v0 = create_model("paper-v0")
    assert v0.encoder.patch_embed.in_channels == 1 and isinstance(v0.encoder.norm, torch.nn.LayerNorm)
    assert v0.projector.net[-1].bias is not None and v0.cfg.head_input == "l2"


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
