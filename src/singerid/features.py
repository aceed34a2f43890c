"""Log-mel front end in torch (no torchaudio): wave [B, T] at 16 kHz → [B, n_mels, n_frames]."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 800
    hop: int = 400
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    eps: float = 1e-10  # log(mel + eps)
    n_frames: int = 240  # 6 s at hop 400 (centre-padded STFT gives 241; the last frame is dropped)

    def to_dict(self) -> dict:
        return asdict(self)


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(cfg: MelConfig) -> Tensor:
    """[n_fft // 2 + 1, n_mels] triangular HTK-scale filters, unnormalised (torchaudio's defaults)."""
    n_freqs = cfg.n_fft // 2 + 1
    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    all_freqs = torch.linspace(0, cfg.sample_rate / 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(_hz_to_mel(torch.tensor(cfg.f_min)), _hz_to_mel(torch.tensor(f_max)), cfg.n_mels + 2)
    f_pts = _mel_to_hz(m_pts.double())
    f_diff = f_pts[1:] - f_pts[:-1]  # [n_mels + 1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class LogMel(nn.Module):
    """[..., T] float wave (e.g. [B, T] or [B, C, T]) → [..., n_mels, n_frames] log-mel power spectrogram."""

    def __init__(self, cfg: MelConfig = MelConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("fb", mel_filterbank(cfg), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.dim() != 2:
            return self(wave.reshape(-1, wave.shape[-1])).unflatten(0, wave.shape[:-1])
        spec = torch.stft(
            wave, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )  # [B, F, frames]
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # [B, n_mels, frames]
        mel = torch.log(mel + self.cfg.eps)
        n = self.cfg.n_frames
        if mel.shape[-1] >= n:
            return mel[..., :n]
        return nn.functional.pad(mel, (0, n - mel.shape[-1]), value=float(torch.log(torch.tensor(self.cfg.eps))))
