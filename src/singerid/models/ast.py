"""Audio Spectrogram Transformer encoder (ViT blocks over 16×16 log-mel patches) → singer embedding."""
from __future__ import annotations

import torch
from torch import Tensor, nn

INITS = ("torch", "trunc_normal")


class ASTEncoder(nn.Module):
    """[B, n_mels, n_frames] or [B, C, n_mels, n_frames] log-mel → [B, embed_dim] (CLS token → Linear + GELU; not
    normalised). A 1-channel input fills an `in_channels`-channel patch embedding by duplication (the reference feeds
    2 channels: stereo, or mono duplicated).

    The defaults are the original `tiny` / `paper-v0` encoder (1 channel, per-example standardisation of the log-mel,
    a final LayerNorm, PyTorch's default init); `paper` sets the reference model's options: in_channels 2, no
    standardisation, no final norm, timm's ViT init (block Linear weights trunc-normal std 0.02, biases 0)."""

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
        in_channels: int = 1,
        standardise: bool = True,
        final_norm: bool = True,
        init: str = "torch",
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.in_channels, self.standardise = in_channels, standardise
        self.grid = (n_mels // patch, n_frames // patch)
        n_patches = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True,
            layer_norm_eps=1e-6,
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else nn.Identity()
        self.head = nn.Sequential(nn.Linear(dim, embed_dim), nn.GELU())
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if init == "trunc_normal":
            self._init_blocks()

    def _init_blocks(self) -> None:
        """timm's ViT init, kept by the reference's blocks: every block's Linear weights (attention in/out projections,
        MLP) trunc-normal std 0.02, their biases 0; LayerNorms stay 1 / 0. Drawn per block (they start different)."""
        for block in self.blocks.layers:
            for name, p in block.named_parameters():
                if "norm" in name:
                    continue
                if p.dim() == 2:
                    nn.init.trunc_normal_(p, std=0.02)
                else:
                    nn.init.zeros_(p)

    def forward(self, mel: Tensor) -> Tensor:
        x = mel if mel.dim() == 4 else mel.unsqueeze(1)  # [B, C, F, T]
        if self.standardise:  # per-example: log-mel levels depend on loudness (paper-v0 / tiny only)
            x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"expected 1 or {self.in_channels} input channels, got {x.shape[1]}")
            x = x.expand(-1, self.in_channels, -1, -1)
        x = self.patch_embed(x)  # [B, dim, F/p, T/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])  # [B, embed_dim]
