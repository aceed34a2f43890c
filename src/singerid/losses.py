"""NT-Xent (SimCLR) over 2B views: views 2i and 2i+1 are a positive pair; every other view is a negative."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def nt_xent(z: Tensor, temperature: float = 0.2) -> dict[str, Tensor]:
    """z [2B, D] (pairs interleaved: (0,1), (2,3), ...) → {"contrastive_loss", "pair_accuracy"}.

    loss = mean over the 2B anchors of -log( exp(S(i,j)/T) / sum_{k != i} exp(S(i,k)/T) ), S = cosine similarity.
    """
    if z.ndim != 2 or z.shape[0] % 2:
        raise ValueError(f"expected [2B, D] with pairs interleaved, got {tuple(z.shape)}")
    z = F.normalize(z, dim=-1)
    sim = z @ z.T / temperature  # [2B, 2B]
    sim = sim.masked_fill(torch.eye(z.shape[0], dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.arange(z.shape[0], device=z.device) ^ 1  # partner index: 0<->1, 2<->3, ...
    loss = F.cross_entropy(sim, target)
    with torch.no_grad():
        acc = (sim.argmax(dim=1) == target).float().mean()
    return {"contrastive_loss": loss, "pair_accuracy": acc}
