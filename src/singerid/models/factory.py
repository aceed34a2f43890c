"""Models built by name from JSON presets: `create_model("paper")`, `list_models()`."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..features import LogMel, MelConfig
from .ast import ASTEncoder
from .heads import Projector


@dataclass
class ModelConfig:
    name: str
    architecture: str = "ast"
    mel: dict = field(default_factory=dict)
    encoder: dict = field(default_factory=dict)
    projector: list[int] = field(default_factory=lambda: [2048, 1024, 1024, 2048])
    projector_bias: bool = True  # bias of the projector's last Linear (reference: none)
    head_input: str = "l2"  # what an identification head reads: "l2" embeddings, or "raw" encoder outputs (reference)
    pretrained: str | None = None  # encoder weights to start from (e.g. "voice": the GE2E of the Resemblyzer wheel)
    preprocess: dict = field(default_factory=dict)  # how a track's audio is prepared (`audio.prepare.Preprocess`)
    train: dict = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: copy.deepcopy(v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(getattr(self, k)) for k in self.__dataclass_fields__}

    @property
    def embed_dim(self) -> int:
        return int(self.encoder.get("embed_dim", 2048))


def list_models() -> list[str]:
    files = resources.files("singerid.models").joinpath("configs").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def get_config(name: str) -> ModelConfig:
    path = resources.files("singerid.models").joinpath("configs", f"{name}.json")
    if not path.is_file():
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return ModelConfig.from_dict(json.loads(path.read_text()))


def load_config(spec: str) -> ModelConfig:
    """A preset name (`get_config`) or a JSON file holding a model config."""
    if spec.endswith(".json") and Path(spec).is_file():
        return ModelConfig.from_dict(json.loads(Path(spec).read_text()))
    return get_config(spec)


ARCHITECTURES = ("ast", "ge2e")


class SingerModel(nn.Module):
    """Front end + encoder + projector. wave [B, T] (mono) or [B, C, T] at 16 kHz → embedding [B, D] / projection
    [B, P]. Architectures: `ast` (log-mel → Audio Spectrogram Transformer), `ge2e` (the LSTM speaker encoder over
    1.6-s partials, its own mel front end inside)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {cfg.architecture!r}; known: {', '.join(ARCHITECTURES)}")
        self.cfg = cfg
        if cfg.architecture == "ast":
            mel = MelConfig(**cfg.mel)
            self.frontend = LogMel(mel)
            self.encoder = ASTEncoder(n_mels=mel.n_mels, n_frames=mel.n_frames, **cfg.encoder)
        else:
            from .ge2e import REMOVED, GE2EEncoder

            used = [REMOVED[k] for k, v in cfg.encoder.items() if k in REMOVED and v not in (0, "mel", None)]
            if used:
                raise ValueError(f"model {cfg.name!r} uses {', '.join(used)}, removed from singerid after commit "
                                 "c20fdcd (it measured no gain): load it with that version")
            self.frontend = nn.Identity()
            self.encoder = GE2EEncoder(**{k: v for k, v in cfg.encoder.items() if k not in REMOVED})
        if cfg.projector[0] != cfg.embed_dim:
            raise ValueError(f"projector input {cfg.projector[0]} != embed_dim {cfg.embed_dim}")
        if cfg.head_input not in ("l2", "raw"):
            raise ValueError(f"head_input must be 'l2' or 'raw', got {cfg.head_input!r}")
        self.projector = Projector(cfg.projector, cfg.projector_bias)

    @property
    def sample_rate(self) -> int:
        return self.frontend.cfg.sample_rate if isinstance(self.frontend, LogMel) else 16000

    def encode(self, wave: Tensor) -> Tensor:
        """[B, T] → [B, D] raw embedding (the projector's input)."""
        return self.encoder(self.frontend(wave))

    def embed(self, wave: Tensor) -> Tensor:
        """[B, T] → [B, D], L2-normalised: what evaluation and the catalogue use."""
        return F.normalize(self.encode(wave), dim=-1)

    def forward(self, wave: Tensor) -> Tensor:
        """[B, T] → [B, P] L2-normalised projections for the contrastive loss."""
        return self.projector(self.encode(wave))


def create_model(name_or_cfg: str | ModelConfig | dict, seed: int | None = None) -> SingerModel:
    cfg = name_or_cfg
    if isinstance(cfg, str):
        cfg = get_config(cfg)
    elif isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if seed is not None:
        torch.manual_seed(seed)
    model = SingerModel(cfg)
    if cfg.pretrained:
        from .ge2e import pretrained_state

        missing, unexpected = model.encoder.load_state_dict(pretrained_state(cfg.pretrained), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"pretrained {cfg.pretrained!r} weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
