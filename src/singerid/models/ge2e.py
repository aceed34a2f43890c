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
# A fine view's log10 power is standardised by these (measured on dev mixtures at -30 dBFS) and scaled down towards
# the mel power's magnitude, so that its zero-initialised weights learn at a pace comparable to the mel's.
FINE_MEAN, FINE_STD, FINE_SCALE = -3.0, 1.6, 0.1


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
    def gained(wave: Tensor, gain_of: Tensor | None = None) -> Tensor:
        """[B, T] raised to -30 dBFS when quieter (never lowered). `gain_of` [B, T]: apply the gain this other wave
        would get (a mixture's parts at the mixture's gain)."""
        ref = wave if gain_of is None else gain_of
        rms = ref.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
        return wave * torch.clamp(10 ** (TARGET_DBFS / 20) / rms, min=1.0)

    def power(self, wave: Tensor, gain_of: Tensor | None = None) -> Tensor:
        """[B, T] → [B, frames, 201] STFT power after the gain (`gained`)."""
        return stft_power(self.gained(wave, gain_of), self.window)

    def to_mel(self, power: Tensor) -> Tensor:
        """[B, frames, 201] STFT power → [B, frames, 40] mel power."""
        return torch.matmul(power, self.fb.T)

    def forward(self, wave: Tensor, gain_of: Tensor | None = None) -> Tensor:
        return self.to_mel(self.power(wave, gain_of))


class MelGate(nn.Module):
    """A learned gain per mel band and frame, read from the finer STFT (a distilled student's accompaniment filter,
    `train --distill-prenet`): STFT power [B, frames, 201] → gains [B, frames, 40] in (0, 2). Dilated 1-D
    convolutions over time, the 201 bins as channels (±15 frames of context). The last layer starts at zero, so the
    gains start at exactly 1 and a student starts as its teacher."""

    def __init__(self, channels: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        layers, width = [], N_FFT // 2 + 1
        for d in dilations:
            layers += [nn.Conv1d(width, channels, 3, padding=d, dilation=d), nn.GELU()]
            width = channels
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(channels, N_MELS, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, power: Tensor) -> Tensor:
        x = torch.log10(power + 1e-6).transpose(1, 2)  # [B, 201, frames]
        return 2 * torch.sigmoid(self.out(self.body(x))).transpose(1, 2)


def stft_scale() -> float:
    """What the STFT power is multiplied by when the LSTM reads it (`input="stft"`): the mean filter weight a bin
    carries in the 40-band mel, so that the 201 inputs sit at the mel bands' scale and Adam's steps on their weights
    are as large, relative to the weights, as on the 40-band ones."""
    return float(slaney_mel_filterbank().sum(axis=0).mean())


def fine_bins(fine: int) -> int:
    """How many bins a fine view of window `fine` gives the LSTM: those up to 4 kHz, where a voice's harmonics stand
    apart (above, the mel bands carry the spectrum's envelope); 0 without a fine view."""
    return fine // 4 + 1 if fine else 0


def input_state(state: dict[str, Tensor], input: str = "mel", fine: int = 0) -> dict[str, Tensor]:
    """A 40-band encoder's state → the same encoder reading `input` (and a fine view of window `fine`): for `stft`
    the first LSTM layer's input weights W [4H, 40] become W · fb / stft_scale() [4H, 201] (the mel is a linear map of
    the power, and the LSTM reads mel power, not its log); a fine view's weights are appended as zeros. Either way
    the encoder computes exactly what it did. A state already of the asked width passes unchanged."""
    w = state["lstm.weight_ih_l0"]
    if input == "stft" and w.shape[1] == N_MELS:
        w = w @ torch.from_numpy(slaney_mel_filterbank()).to(w) / stft_scale()
    width = (N_MELS if input == "mel" else N_FFT // 2 + 1) + fine_bins(fine)
    if w.shape[1] < width:
        w = torch.cat([w, w.new_zeros(len(w), width - w.shape[1])], dim=1)
    return {**state, "lstm.weight_ih_l0": w.contiguous()}


class GE2EEncoder(nn.Module):
    """wave [B, T] at 16 kHz → [B, 256]: the L2-normalised mean of its 1.6-s partials' embeddings (Resemblyzer's
    utterance embedding). `partials` gives the per-partial embeddings [B, P, 256]. `prenet` > 0: a `MelGate` of that
    many channels in front of the LSTM (absent from the pretrained weights; a distilled student adds it). `input`:
    what the LSTM reads, the 40-band mel power (`mel`, Resemblyzer) or the 201-bin STFT power it is made from
    (`stft`, scaled by `stft_scale()`: `train --distill-input stft`). `fine` > 0: beside it, the standardised log
    power of a longer-window STFT up to 4 kHz (`fine` samples, e.g. 1024: 257 bins of 16 Hz that resolve a voice's
    harmonics; `train --distill-fine`). A 40-band state converts exactly to either with `input_state`."""

    def __init__(self, hidden: int = 256, layers: int = 3, embed_dim: int = 256, batch_partials: int = 256,
                 prenet: int = 0, input: str = "mel", fine: int = 0):
        super().__init__()
        if input not in ("mel", "stft"):
            raise ValueError(f"GE2E input must be mel or stft, got {input!r}")
        if prenet and input != "mel":
            raise ValueError("a mel gate (prenet) gates the 40-band mel: it needs input='mel'")
        if fine and fine <= N_FFT:
            raise ValueError(f"a fine view needs a longer window than the mel's {N_FFT} samples, got {fine}")
        self.input, self.fine = input, fine
        self.mel = VoiceMel()
        self.prenet = MelGate(prenet) if prenet else None
        width = (N_MELS if input == "mel" else N_FFT // 2 + 1) + fine_bins(fine)
        self.lstm = nn.LSTM(width, hidden, layers, batch_first=True)
        self.stft_scale = stft_scale()
        if fine:
            self.register_buffer("fine_window", torch.hann_window(fine, periodic=True), persistent=False)
        self.linear = nn.Linear(hidden, embed_dim)
        self.batch_partials = batch_partials

    def embed_partials(self, mels: Tensor, frames: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """[N, 160, F] partials' features → [N, 256] L2-normalised (ReLU then norm, as trained); with `frames`, also
        the top LSTM layer's output at every frame, [N, 160, 256] (what a distilled student is taught frame by
        frame)."""
        out, seqs = [], []
        for i in range(0, len(mels), self.batch_partials):
            seq, (h, _) = self.lstm(mels[i : i + self.batch_partials])
            out.append(F.normalize(F.relu(self.linear(h[-1])), dim=-1))
            seqs.append(seq)
        return (torch.cat(out), torch.cat(seqs)) if frames else torch.cat(out)

    def partials(self, wave: Tensor, frames: bool = False, gain: bool = True) -> Tensor | tuple[Tensor, Tensor]:
        """[B, T] → [B, P, 256]: the wave is zero-padded to cover its last partial, as Resemblyzer does. With
        `frames`, also the top LSTM layer's frame outputs, [B, P, 160, 256]. `gain=False`: the wave's level was set
        already (the preset's preparation), read it as it is."""
        return self.mel_partials(self.features(pad_to_partials(wave), gain), wave.shape[-1], frames)

    def features(self, wave: Tensor, gain: bool = True) -> Tensor:
        """[B, T] → [B, frames, F] what the LSTM reads: the 40-band mel power, gated by the pre-net when there is
        one, or the 201-bin scaled STFT power (`input="stft"`); then, with a fine view, its `fine_bins` log powers.
        Quiet audio is raised to -30 dBFS first, unless `gain` is False."""
        wave = self.mel.gained(wave) if gain else wave
        power = stft_power(wave, self.mel.window)
        if self.input == "stft":
            x = power * self.stft_scale
        else:
            mel = self.mel.to_mel(power)
            x = mel if self.prenet is None else mel * self.prenet(power)
        if not self.fine:
            return x
        fine = torch.log10(stft_power(wave, self.fine_window)[..., : fine_bins(self.fine)] + 1e-8)
        return torch.cat([x, FINE_SCALE * (fine - FINE_MEAN) / FINE_STD], dim=-1)

    def mel_partials(self, mel: Tensor, n_samples: int, frames: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """[B, frames, F] features (`features`) of a padded `n_samples` wave →
        [B, P, 256] its partials' embeddings (and, with `frames`, the top LSTM layer's frame outputs
        [B, P, 160, 256])."""
        starts = partial_starts(n_samples)
        parts = torch.stack([mel[:, s : s + PARTIAL] for s in starts], dim=1)  # [B, P, 160, F]
        shape, flat = (len(mel), len(starts)), (-1, PARTIAL, mel.shape[-1])
        if not frames:
            return self.embed_partials(parts.reshape(flat)).reshape(*shape, -1)
        emb, seq = self.embed_partials(parts.reshape(flat), frames=True)
        return emb.reshape(*shape, -1), seq.reshape(*shape, PARTIAL, -1)

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
