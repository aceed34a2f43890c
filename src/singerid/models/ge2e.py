"""The `voice` encoder: Resemblyzer's GE2E speaker encoder (3-layer LSTM over a 40-band mel), our own code, as a
trainable architecture. With `pretrained: "voice"` its weights come from the Resemblyzer wheel (`singerid
fetch-weights`), read with `weights_only=True` and cached as safetensors.

As in Resemblyzer: 16 kHz, quiet audio raised to -30 dBFS (never lowered), librosa-style Slaney mel power spectrogram
(25 ms / 10 ms, not log), 1.6-s partials at 1.3 per second (the last kept when ≥ 75 % covered); an utterance's
embedding is the L2-normalised mean of its partials' embeddings (each ReLU(Linear(LSTM)) then L2-normalised).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

SR, N_FFT, HOP, N_MELS, PARTIAL, RATE, MIN_COVERAGE = 16000, 400, 160, 40, 160, 1.3, 0.75
TARGET_DBFS = -30.0
# encoder options of distillation experiments removed after commit c20fdcd (no measured gain): {key: what it was}
REMOVED = {"prenet": "a mel gate (--distill-prenet)", "input": "an STFT input (--distill-input stft)",
           "fine": "a fine STFT view (--distill-fine)"}


def slaney_mel_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] librosa's default filters (Slaney scale, area-normalised)."""
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, float)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, float)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    return (w * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]).astype(np.float32)


def partial_starts(n_samples: int) -> list[int]:
    """Frame offsets of the 1.6-s partials of an utterance (Resemblyzer's compute_partial_slices)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SR / RATE) / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


def pad_to_partials(wave: Tensor) -> Tensor:
    """[..., T] → zero-padded to cover its last partial (Resemblyzer)."""
    return F.pad(wave, (0, max(0, (partial_starts(wave.shape[-1])[-1] + PARTIAL) * HOP - wave.shape[-1])))


def stft_power(wave: Tensor, window: Tensor) -> Tensor:
    """[B, T] → [B, frames, n_fft // 2 + 1] power of the centred, zero-padded STFT at the 10-ms hop (n_fft = the
    window's length; frames = T // 160 + 1 whatever the window)."""
    spec = torch.stft(wave, len(window), HOP, window=window, center=True, pad_mode="constant", return_complex=True)
    return (spec.abs() ** 2).transpose(1, 2)


class VoiceMel(nn.Module):
    """wave [B, T] at 16 kHz → [B, frames, 40] mel power (librosa: centred, zero-padded STFT), after raising quiet
    audio to -30 dBFS (Resemblyzer's preprocessing, per example)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("fb", torch.from_numpy(slaney_mel_filterbank()), persistent=False)

    @staticmethod
    def gained(wave: Tensor) -> Tensor:
        """[B, T] raised to -30 dBFS when quieter (never lowered)."""
        rms = wave.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
        return wave * torch.clamp(10 ** (TARGET_DBFS / 20) / rms, min=1.0)

    def forward(self, wave: Tensor, gain: bool = True) -> Tensor:
        """[B, T] → [B, frames, 40]; `gain=False`: the level is left as it is."""
        power = stft_power(self.gained(wave) if gain else wave, self.window)
        return torch.matmul(power, self.fb.T)


class GE2EEncoder(nn.Module):
    """wave [B, T] at 16 kHz → [B, 256]: the L2-normalised mean of its 1.6-s partials' embeddings (Resemblyzer's
    utterance embedding). `partials` gives the per-partial embeddings [B, P, 256]."""

    def __init__(self, hidden: int = 256, layers: int = 3, embed_dim: int = 256, batch_partials: int = 256):
        super().__init__()
        self.mel = VoiceMel()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embed_dim)
        self.batch_partials = batch_partials

    def embed_partials(self, mels: Tensor) -> Tensor:
        """[N, 160, 40] partials' mel power → [N, 256] L2-normalised (ReLU then norm, as trained)."""
        out = []
        for i in range(0, len(mels), self.batch_partials):
            _, (h, _) = self.lstm(mels[i : i + self.batch_partials])
            out.append(F.normalize(F.relu(self.linear(h[-1])), dim=-1))
        return torch.cat(out)

    def partials(self, wave: Tensor, gain: bool = True) -> Tensor:
        """[B, T] → [B, P, 256]: the wave is zero-padded to cover its last partial, as Resemblyzer does. Quiet audio
        is raised to -30 dBFS first, unless `gain` is False (the preset's preparation set the level already)."""
        padded = pad_to_partials(wave)
        mel = self.mel(padded, gain)
        starts = partial_starts(wave.shape[-1])
        parts = torch.stack([mel[:, s : s + PARTIAL] for s in starts], dim=1)  # [B, P, 160, 40]
        return self.embed_partials(parts.reshape(-1, PARTIAL, N_MELS)).reshape(len(mel), len(starts), -1)

    def forward(self, wave: Tensor) -> Tensor:
        return F.normalize(self.partials(wave).mean(dim=1), dim=-1)


def pretrained_state(name: str = "voice") -> dict[str, Tensor]:
    """The GE2E weights of the Resemblyzer wheel, keyed for GE2EEncoder (converted once to safetensors)."""
    from ..weights import locate

    if name != "voice":
        raise ValueError(f"unknown pretrained GE2E weights {name!r}; known: voice")
    folder = locate("voice")
    cached = folder / "ge2e.safetensors"
    if not cached.is_file():
        state = torch.load(folder / "pretrained.pt", map_location="cpu", weights_only=True)["model_state"]
        state = {k: v.contiguous() for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        tmp = cached.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(cached)
    return load_file(str(cached))
