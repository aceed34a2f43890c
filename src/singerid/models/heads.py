"""MLP heads on the embedding: the contrastive projector and the identification classifier (same shape)."""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


def mlp_bn(dims: list[int], last_bias: bool = True) -> nn.Sequential:
    """Linear → BN → ReLU between every pair of dims except after the last Linear (bias-free with `last_bias=False`)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, bias=last_bias or i < len(dims) - 2))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Projector(nn.Module):
    """[B, embed_dim] → [B, out] L2-normalised (paper: 2048 → 1024 → 1024 → 2048, BN + ReLU; the reference's last
    Linear has no bias)."""

    def __init__(self, dims: list[int], last_bias: bool = True):
        super().__init__()
        self.net = mlp_bn(dims, last_bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=-1)


class ClassifierHead(nn.Module):
    """[B, embed_dim] → [B, C] L2-normalised logits (reference code: 2048 → 1024 → 1024 → C)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 1024, scale: float = 1.0):
        super().__init__()
        self.net = mlp_bn([in_dim, hidden, hidden, n_classes])
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=-1) * self.scale
