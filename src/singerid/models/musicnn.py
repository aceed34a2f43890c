"""`musicnn`: Pons & Serra's musically motivated music-tagging CNN (MTT_musicnn, trained on MagnaTagATune's 50 tags,
"vocal", "no vocals", "female", "singing"… among them), our own PyTorch port. Its weights come from the `musicnn`
wheel on PyPI (ISC; a TF1 checkpoint read with our tensor-bundle reader, `singerid fetch-weights`), cached as
safetensors. Used frozen, as features of the vocal-activity model.

As the reference: 16 kHz, librosa's mel power spectrogram (n_fft 512, hop 256, 96 Slaney bands, centred), log10(1 +
10⁴·mel); 3-s patches (187 frames). Front end: input BatchNorm, two "timbral" convs (7 frames × 38 / 67 bands, 204
filters each) and three "temporal" convs (128 / 64 / 32 frames × 1 band, 51 filters each), each ReLU → BatchNorm →
max over frequency; mid end: three 7-frame convs (64 filters, the 2nd and 3rd residual), ReLU → BatchNorm; back end:
max and mean over time of the 753 concatenated maps → BatchNorm → dense 200 (ReLU → BatchNorm) → dense 50 tags.
BatchNorm eps 1e-3 (TF's default); TF "same" padding pads (k − 1) // 2 before and the rest after.
"""
from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from .ge2e import slaney_mel_filterbank

SR, N_FFT, HOP, N_MELS = 16000, 512, 256, 96
TAGS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
        "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
        "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo",
        "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
        "no voice", "weird", "country", "metal", "female voice", "choral")
CHECKPOINT = "MTT_musicnn/"  # the bundle's prefix inside the wheel's package folder (files `.index`, `.data-…`)


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=1e-3)


class MusiCNN(nn.Module):
    """wave [B, T] at 16 kHz → dict of [B, …] features of the whole wave: `taggram` [B, 50] (sigmoid of the tags),
    `penultimate` [B, 200], `max_pool` and `mean_pool` [B, 753] (over time of the front- and mid-end maps)."""

    def __init__(self, midend: int = 64, backend: int = 200, n_tags: int = len(TAGS)):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("fb", torch.from_numpy(slaney_mel_filterbank(SR, N_FFT, N_MELS)), persistent=False)
        self.bn_in = nn.BatchNorm2d(1, eps=1e-3)
        self.timbral = nn.ModuleList(nn.Conv2d(1, 204, (7, int(f * N_MELS))) for f in (0.4, 0.7))
        self.timbral_bn = nn.ModuleList(nn.BatchNorm2d(204, eps=1e-3) for _ in range(2))
        self.temporal = nn.ModuleList(nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32))
        self.temporal_bn = nn.ModuleList(nn.BatchNorm2d(51, eps=1e-3) for _ in range(3))
        front = 2 * 204 + 3 * 51  # 561
        self.mid = nn.ModuleList([nn.Conv1d(front, midend, 7)] + [nn.Conv1d(midend, midend, 7) for _ in range(2)])
        self.mid_bn = nn.ModuleList(_bn(midend) for _ in range(3))
        self.pool_bn = _bn(2 * (front + 3 * midend))
        self.dense = nn.Linear(2 * (front + 3 * midend), backend)
        self.dense_bn = _bn(backend)
        self.out = nn.Linear(backend, n_tags)

    def logmel(self, wave: Tensor) -> Tensor:
        """[B, T] → [B, 1, frames, 96] log10(1 + 10⁴·mel power) (librosa 0.7: centred, reflect-padded STFT)."""
        spec = torch.stft(wave, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True)
        return torch.log10(1 + 1e4 * torch.matmul(self.fb, spec.abs() ** 2)).transpose(1, 2).unsqueeze(1)

    def forward(self, wave: Tensor) -> dict[str, Tensor]:
        x = self.bn_in(self.logmel(wave))  # [B, 1, frames, 96]
        maps = []
        for conv, bn in zip(self.timbral, self.timbral_bn):  # 'valid' over frequency, time padded 3 + 3
            maps.append(bn(F.relu(conv(F.pad(x, (0, 0, 3, 3))))).amax(dim=-1))  # [B, 204, frames]
        for conv, bn in zip(self.temporal, self.temporal_bn):  # TF 'same' over time
            k = conv.kernel_size[0]
            maps.append(bn(F.relu(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2))))).amax(dim=-1))  # [B, 51, frames]
        front = torch.cat(maps, dim=1)  # [B, 561, frames]
        feats, h = [front], front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))))  # [B, 64, frames]
            h = y if i == 0 else y + h
            feats.append(h)
        cat = torch.cat(feats, dim=1)  # [B, 753, frames]
        mx, mean = cat.amax(dim=-1), cat.mean(dim=-1)
        pooled = torch.stack([mx, mean], dim=-1).flatten(1)  # [B, 1506], TF's order: (max, mean) per map
        pen = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {"taggram": torch.sigmoid(self.out(pen)), "penultimate": pen, "max_pool": mx, "mean_pool": mean}


def convert_checkpoint(t: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """The TF bundle's tensors (conv2d…conv2d_7, batch_normalization…_10, dense, dense_1) → MusiCNN's state dict."""
    def conv(name: str, conv1d: bool = False) -> dict[str, Tensor]:
        k = torch.from_numpy(t[f"{name}/kernel"]).permute(3, 2, 0, 1)  # HWIO → OIHW
        if conv1d:  # [O, 1, 7, C] (a conv over the whole channel axis as TF's "width") → [O, C, 7]
            k = k[:, 0].transpose(1, 2)
        return {"weight": k.contiguous(), "bias": torch.from_numpy(t[f"{name}/bias"])}

    def bn(name: str) -> dict[str, Tensor]:
        return {"weight": torch.from_numpy(t[f"{name}/gamma"]), "bias": torch.from_numpy(t[f"{name}/beta"]),
                "running_mean": torch.from_numpy(t[f"{name}/moving_mean"]),
                "running_var": torch.from_numpy(t[f"{name}/moving_variance"]),
                "num_batches_tracked": torch.tensor(0)}

    def bn_name(i: int) -> str:
        return "batch_normalization" + (f"_{i}" if i else "")

    parts = {"bn_in": bn(bn_name(0)), "timbral.0": conv("conv2d"), "timbral.1": conv("conv2d_1"),
             "timbral_bn.0": bn(bn_name(1)), "timbral_bn.1": bn(bn_name(2)), "pool_bn": bn(bn_name(9)),
             "dense_bn": bn(bn_name(10))}
    for i in range(3):
        parts[f"temporal.{i}"] = conv(f"conv2d_{2 + i}")
        parts[f"temporal_bn.{i}"] = bn(bn_name(3 + i))
        parts[f"mid.{i}"] = conv(f"conv2d_{5 + i}", conv1d=True)
        parts[f"mid_bn.{i}"] = bn(bn_name(6 + i))
    for name, layer in (("dense", "dense"), ("out", "dense_1")):
        parts[name] = {"weight": torch.from_numpy(t[f"{layer}/kernel"]).T.contiguous(),
                       "bias": torch.from_numpy(t[f"{layer}/bias"])}
    return {f"{m}.{k}": v.contiguous() for m, d in parts.items() for k, v in d.items()}


def pretrained_musicnn() -> MusiCNN:
    """MTT_musicnn with the `musicnn` wheel's weights (converted once to safetensors next to the raw files), eval mode."""
    from ..separation.tf_bundle import read_bundle
    from ..weights import locate

    folder = locate("musicnn")
    cached = folder / "musicnn.safetensors"
    if not cached.is_file():
        state = convert_checkpoint(read_bundle(f"{folder}/{CHECKPOINT}"))
        tmp = cached.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(cached)
    model = MusiCNN()
    model.load_state_dict(load_file(str(cached)))
    return model.eval()
