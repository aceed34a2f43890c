"""The `voice` baseline: Resemblyzer's pretrained GE2E speaker encoder (3-layer LSTM over 40-band mel), our own code.

As in Resemblyzer: 16 kHz, volume raised to -30 dBFS, librosa-style Slaney mel power spectrogram (25 ms / 10 ms,
not log), 1.6-s partial utterances at 1.3 per second; a window's embedding is the normalised mean of its partials'.
Weights are read from `pretrained.pt` (tensors only, `weights_only=True`) and cached as safetensors.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from ..audio import WINDOW_SECONDS
from ..weights import locate

log = logging.getLogger(__name__)

SR, N_FFT, HOP, N_MELS, PARTIAL, RATE, MIN_COVERAGE = 16000, 400, 160, 40, 160, 1.3, 0.75


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


class GE2E(nn.Module):
    """mel [B, 160, 40] → [B, 256] L2-normalised (ReLU then norm, as trained)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: Tensor) -> Tensor:
        _, (h, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(h[-1])), dim=-1)


def load_ge2e(random_init: bool = False) -> GE2E:
    model = GE2E()
    if random_init:
        return model.eval()
    folder = locate("voice")
    cached = folder / "ge2e.safetensors"
    if not cached.is_file():
        state = torch.load(folder / "pretrained.pt", map_location="cpu", weights_only=True)["model_state"]
        state = {k: v.contiguous() for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        tmp = cached.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(cached)
    model.load_state_dict(load_file(str(cached)), strict=True)
    return model.eval()


class VoiceEmbedder:
    """Embedder protocol: 6-s windows [N, T] at 16 kHz → [N, 256]."""

    name = "voice"
    dim = 256
    sample_rate = SR
    window_seconds = WINDOW_SECONDS

    def __init__(self, device: str = "cpu", batch_size: int = 64, random_init: bool = False):
        self.device = device
        self.model = load_ge2e(random_init).to(device)
        self.batch_size = batch_size
        self.window = torch.hann_window(N_FFT, periodic=True, device=device)
        self.fb = torch.from_numpy(slaney_mel_filterbank()).to(device)

    def mel(self, wave: Tensor) -> Tensor:
        """[B, T] → [B, frames, 40] mel power (librosa: centred, zero-padded)."""
        spec = torch.stft(wave, N_FFT, HOP, window=self.window, center=True, pad_mode="constant", return_complex=True)
        return torch.matmul(self.fb, spec.abs() ** 2).transpose(1, 2)

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        # Resemblyzer raises quiet audio to -30 dBFS (never lowers it)
        rms = x.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
        x = x * torch.clamp(10 ** (-30 / 20) / rms, min=1.0)
        starts = partial_starts(x.shape[1])
        x = F.pad(x, (0, max(0, (starts[-1] + PARTIAL) * HOP - x.shape[1])))
        mel = self.mel(x)  # [N, frames, 40]
        parts = torch.stack([mel[:, s : s + PARTIAL] for s in starts], dim=1)  # [N, P, 160, 40]
        flat = parts.reshape(-1, PARTIAL, N_MELS)
        emb = torch.cat([self.model(flat[i : i + self.batch_size]) for i in range(0, len(flat), self.batch_size)])
        emb = emb.reshape(len(x), len(starts), -1).mean(dim=1)
        return F.normalize(emb, dim=-1).cpu().numpy()
