"""Vocal activity per window: what `voiced.py` decides a track's vocal windows from.

(a) `energy_activity` / `window_activity`: from a vocal stem (given or separated) relative to its mixture — a window
    is vocal when the stem is loud enough in absolute terms and relative to the mixture.
(b) `VocalActivityModel`: P(vocals) of windows of mixtures, no separation: a small head on a frozen pretrained music
    tagger, trained by `singerid train-vad` (`vad_train`) from vocal stems mixed onto instrumentals. Installed in
    `$SINGERID_HOME/vad` (`installed_vad`), it scores the windows of audio that is neither a stem nor separated.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .audio import SAMPLE_RATE, cut_windows, peak, window_starts

log = logging.getLogger(__name__)


@dataclass
class VadConfig:
    window: float = 3.0  # seconds (the paper's classifier works on 3-s windows)
    min_level_db: float = -45.0  # vocal RMS relative to full scale of the peak-normalised track
    min_ratio_db: float = -12.0  # vocal energy relative to the mixture's


def _db(x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(x, 1e-12))


def energy_activity(vocals: np.ndarray, mixture: np.ndarray | None = None, cfg: VadConfig = VadConfig(),
                    hop: float | None = None) -> tuple[list[float], np.ndarray, np.ndarray]:
    """→ (window starts s, vocal flags [N] bool, vocal-to-mixture ratio dB [N]) for windows of cfg.window seconds."""
    mix = vocals if mixture is None else mixture
    starts = window_starts(len(vocals) / SAMPLE_RATE, cfg.window, hop)
    flags, ratio = window_activity(cut_windows(vocals, starts, cfg.window), cut_windows(mix, starts, cfg.window),
                                   peak(mix), cfg)
    return starts, flags, ratio


def window_activity(vocals: np.ndarray, mixture: np.ndarray, peak: float,
                    cfg: VadConfig = VadConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Vocal windows [N, T] and their mixture windows [N, T], `peak` = the track's mixture peak → (vocal flags [N]
    bool, vocal-to-mixture ratio dB [N]): rule (a) on windows, so a pipeline can judge windows it separated alone."""
    scale = max(peak, 1e-8)
    v_db = _db(np.mean((vocals / scale) ** 2, axis=1))
    ratio = v_db - _db(np.mean((mixture / scale) ** 2, axis=1))
    return (v_db > cfg.min_level_db) & (ratio > cfg.min_ratio_db), ratio


ENCODERS = ("musicnn", "voice")


@dataclass
class VadModelConfig:
    """The vocal-activity model: a frozen pretrained encoder's features of each window, standardised, and a small MLP.
    `musicnn` (default): the MTT_musicnn music tagger read once per 3-s window (its 50 tag probabilities, penultimate
    layer and the max and mean over time of its 753 front- and mid-end maps: 1756 numbers). `voice`: the GE2E speaker
    encoder read per 1.6-s partial (its LSTM state, embedding, output statistics and log-mel statistics: 1104
    numbers), the window's logit the mean of its partials' logits."""

    window: float = 3.0  # seconds per decision
    hidden: int = 256
    dropout: float = 0.5
    encoder: str = "musicnn"  # pretrained weights of the frozen encoder (ENCODERS); never saved with the head


def _pretrained_encoder(name: str) -> nn.Module:
    if name == "musicnn":
        from .models.musicnn import pretrained_musicnn

        return pretrained_musicnn()
    from .models.ge2e import GE2EEncoder, pretrained_state

    encoder = GE2EEncoder()
    encoder.load_state_dict(pretrained_state(name))
    return encoder


class VocalActivityModel(nn.Module):
    """[B, T] waves (`cfg.window` s at 16 kHz, peak-normalised per track) → [B] logits of "vocals in ≥ half the
    window". Only the head and the feature standardisation are trained and saved (`vad.safetensors` + `vad.json`)."""

    def __init__(self, cfg: VadModelConfig = VadModelConfig(), encoder: nn.Module | None = None):
        super().__init__()
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"unknown vocal-activity encoder {cfg.encoder!r}; known: {', '.join(ENCODERS)}")
        self.cfg = cfg
        self.encoder = (encoder or _pretrained_encoder(cfg.encoder)).eval().requires_grad_(False)
        if cfg.encoder == "musicnn":
            dim = self.encoder.out.out_features + self.encoder.dense.out_features + self.encoder.dense.in_features  # 1756
        else:
            dim = 4 * self.encoder.linear.in_features + 2 * self.encoder.lstm.input_size
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(dim, cfg.hidden), nn.ReLU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1))

    @torch.inference_mode()
    def features(self, wave: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """[B, T] → [B, P, D]: P = 1 for `musicnn` (D = 1756), P 1.6-s partials for `voice` (D = 1104)."""
        if self.cfg.encoder == "musicnn":
            out = [torch.cat([o["taggram"], o["penultimate"], o["max_pool"], o["mean_pool"]], dim=-1)
                   for o in map(self.encoder, wave.split(batch))]
            return torch.cat(out)[:, None] if out else torch.zeros(0, 1, len(self.mean))
        return self._voice_features(wave, batch)

    def _voice_features(self, wave: torch.Tensor, batch: int) -> torch.Tensor:
        """[B, T] → [B, P, 1104] per 1.6-s partial, from the frozen GE2E encoder: its last LSTM state, its embedding, the
        mean and max over time of the last LSTM layer's outputs (256 each), and the log-mel mean and std (40 each)."""
        from .models.ge2e import HOP, N_MELS, PARTIAL, partial_starts

        enc, out = self.encoder, []
        for b in wave.split(batch):
            starts = partial_starts(b.shape[-1])
            b = nn.functional.pad(b, (0, max(0, (starts[-1] + PARTIAL) * HOP - b.shape[-1])))
            mel = enc.mel(b)  # [b, frames, 40]
            parts = torch.stack([mel[:, s : s + PARTIAL] for s in starts], dim=1).reshape(-1, PARTIAL, N_MELS)
            seq, (h, _) = enc.lstm(parts)  # [b * P, 160, 256], [layers, b * P, 256]
            e = nn.functional.normalize(nn.functional.relu(enc.linear(h[-1])), dim=-1)
            logmel = torch.log10(parts + 1e-6)
            f = torch.cat([h[-1], e, seq.mean(1), seq.amax(1), logmel.mean(1), logmel.std(1)], dim=-1)
            out.append(f.reshape(len(b), len(starts), -1))
        return torch.cat(out) if out else torch.zeros(0, 1, len(self.mean))

    def head_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, P, D] → [B]: the mean of the partials' logits (P = 1 for `musicnn`)."""
        return self.head((feats - self.mean) / self.scale).squeeze(-1).mean(dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(wave))

    def trained_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    @property
    def ident(self) -> str:
        """12 hex digits naming the trained weights and config (part of the embedding cache key)."""
        h = hashlib.sha1(json.dumps(asdict(self.cfg), sort_keys=True).encode())
        for k, v in sorted(self.trained_state().items()):
            h.update(k.encode() + v.cpu().numpy().tobytes())
        return h.hexdigest()[:12]

    def save(self, folder: str | os.PathLike, meta: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.trained_state(), str(folder / "vad.safetensors"))
        doc = {"format": FORMAT, "config": asdict(self.cfg), "ident": self.ident, **(meta or {})}
        (folder / "vad.json").write_text(json.dumps(doc, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, encoder: nn.Module | None = None) -> VocalActivityModel:
        folder = Path(folder)
        meta = json.loads((folder / "vad.json").read_text()) if (folder / "vad.json").is_file() else {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: not a singerid vocal-activity model (format {FORMAT}); retrain with "
                             "`singerid train-vad`")
        m = cls(VadModelConfig(**meta["config"]), encoder)
        missing, unexpected = m.load_state_dict(load_file(str(folder / "vad.safetensors")), strict=False)
        if unexpected or [k for k in missing if not k.startswith("encoder.")]:
            raise ValueError(f"{folder}: weights do not match the config (missing {missing}, unexpected {unexpected})")
        return m.eval()

    @torch.inference_mode()
    def predict(self, wave: np.ndarray, hop: float | None = None) -> tuple[list[float], np.ndarray]:
        """Track [T] → (window starts s, P(vocals) [N]) for `cfg.window`-s windows; the track is peak-normalised."""
        starts = window_starts(len(wave) / SAMPLE_RATE, self.cfg.window, hop)
        w = cut_windows(wave, starts, self.cfg.window) / max(peak(wave), 1e-8)  # no scaled copy of a long track
        return starts, torch.sigmoid(self(torch.from_numpy(np.ascontiguousarray(w, np.float32)))).numpy()

    def window_scores(self, wave: np.ndarray, seconds: float) -> tuple[list[float], np.ndarray]:
        """Track [T] → (starts of its `seconds`-long windows, [N] the mean P(vocals) of the `cfg.window`-s windows
        starting in each)."""
        s3, p = self.predict(wave)
        starts = window_starts(len(wave) / SAMPLE_RATE, seconds)
        return starts, np.array([float(np.mean([q for t, q in zip(s3, p) if s <= t < s + seconds] or [0.0]))
                                 for s in starts])


FORMAT = "singerid-vad-2"
_INSTALLED: dict[str, VocalActivityModel | None] = {}


def vad_folder() -> Path:
    """Where `singerid train-vad` installs the model by default, and where the pipeline looks for it."""
    from .weights import home

    return home() / "vad"


def installed_vad(folder: str | os.PathLike | None = None) -> VocalActivityModel | None:
    """The vocal-activity model in `folder` (default: `$SINGERID_HOME/vad`), loaded once per process; None, with one
    logged warning, when none is installed (windows of unseparated audio are then chosen by energy)."""
    folder = Path(folder) if folder else vad_folder()
    key = str(folder.resolve())
    if key not in _INSTALLED:
        if (folder / "vad.json").is_file():
            _INSTALLED[key] = VocalActivityModel.load(folder)
            log.info("vocal-activity model %s from %s", _INSTALLED[key].ident, folder)
        else:
            log.warning("no vocal-activity model in %s: windows of unseparated audio are chosen by energy alone "
                        "(install one with `singerid train-vad --manifest TRACKS.csv`)", folder)
            _INSTALLED[key] = None
    return _INSTALLED[key]


def use_vad(folder: str | os.PathLike) -> VocalActivityModel:
    """Make the model in `folder` the default of this process (the CLI's `--vad PATH`)."""
    model = installed_vad(folder)
    if model is None:
        raise FileNotFoundError(f"{folder}: no vocal-activity model (vad.json) there")
    _INSTALLED[str(vad_folder().resolve())] = model
    return model
