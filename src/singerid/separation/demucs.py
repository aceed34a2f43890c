"""Optional `demucs` backend, for users whose Demucs weights are already cached (they are fetched from Demucs' own
servers, which this project never contacts). Any model with Demucs' interface works: `.sources`, `.samplerate`,
`.audio_channels`, forward [B, C, T] → [B, S, C, T]."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DemucsModel:
    """Wrap a Demucs-style network as a StemModel: stereo [2, N] → {"vocals", "accompaniment", ...}."""

    def __init__(self, net: nn.Module, device: str = "cpu", segment_seconds: float = 8.0):
        self.net = net.to(device).eval()
        self.device = device
        self.sample_rate = int(net.samplerate)
        self.sources = list(net.sources)
        if "vocals" not in self.sources:
            raise ValueError(f"Demucs model has no vocals source: {self.sources}")
        self.segment = int(segment_seconds * self.sample_rate)

    @classmethod
    def pretrained(cls, name: str = "htdemucs", device: str = "cpu") -> "DemucsModel":
        try:
            from demucs.pretrained import get_model
        except ImportError as e:
            raise ImportError("the demucs backend needs the demucs package (pip install demucs) and its cached "
                              "weights; the offline default is --separate spleeter") from e
        model = get_model(name)
        return cls(model.models[0] if hasattr(model, "models") else model, device)

    @torch.inference_mode()
    def separate(self, wave: np.ndarray, stems: tuple[str, ...] = ("vocals", "accompaniment")) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(wave, np.float32)).to(self.device)
        ref = x.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)
        x = (x - mean) / std  # Demucs' input normalisation
        chans = getattr(self.net, "audio_channels", 2)
        x = x[:chans]
        outs = []
        for s in range(0, x.shape[1], self.segment):
            part = x[:, s : s + self.segment]
            pad = self.segment - part.shape[1]
            y = self.net(torch.nn.functional.pad(part, (0, pad))[None])[0]  # [S, C, T]
            outs.append(y[..., : part.shape[1]])
        y = torch.cat(outs, dim=-1) * std + mean
        out = {name: y[i].cpu().numpy() for i, name in enumerate(self.sources)}
        out["accompaniment"] = sum(v for k, v in out.items() if k != "vocals")
        return {k: out[k] for k in stems}
