"""Audio Spectrogram Transformer encoder (ViT blocks over 16×16 log-mel patches) → singer embedding."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ASTEncoder(nn.Module):
    """[B, n_mels, n_frames] log-mel → [B, embed_dim] (CLS token → Linear + GELU; not normalised)."""

    def __init__(
        self,
        n_mels: int = 128,
        n_frames: int = 240,
        patch: int = 16,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        embed_dim: int = 2048,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.grid = (n_mels // patch, n_frames // patch)
        n_patches = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True,
            layer_norm_eps=1e-6,
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(nn.Linear(dim, embed_dim), nn.GELU())
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, mel: Tensor) -> Tensor:
        # per-example standardisation: log-mel levels depend on loudness, the encoder should not
        x = (mel - mel.mean(dim=(1, 2), keepdim=True)) / (mel.std(dim=(1, 2), keepdim=True) + 1e-5)
        x = self.patch_embed(x.unsqueeze(1))  # [B, dim, F/p, T/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])  # [B, embed_dim]
