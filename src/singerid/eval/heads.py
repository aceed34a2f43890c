"""Identification on frozen embeddings: the paper's classifier head, and nearest centroid (cosine)."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..models.backend import pair_scores
from ..models.heads import ClassifierHead
from ..models.selfnorm import EnrolmentNorm, SelfNormConfig

log = logging.getLogger(__name__)


@dataclass
class HeadConfig:
    """Paper §3.3: Adam 0.01, batch 100 drawn on the fly, ×0.1 after 10 flat epochs, stop after 20; epoch = 32 its."""

    hidden: int = 1024
    lr: float = 0.01
    batch: int = 100
    epoch_steps: int = 32
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    stop_patience: int = 20
    max_epochs: int = 200
    logit_scale: float = 1.0  # reference code: logits L2-normalised (scale 1) before cross-entropy
    sampling: str = "singer"  # "singer": a singer, then a track, then a window (reference); "track": a track, then a window
    raw_input: bool = False  # read the raw encoder output rather than L2-normalised embeddings (the `paper` model)
    seed: int = 0


SAMPLING = ("singer", "track")


class TrackSampler:
    """Draws training tracks for a batch: class-balanced (a singer uniformly, then one of their tracks; reference code)
    or uniformly over tracks (biased toward singers with many tracks)."""

    def __init__(self, track_labels: np.ndarray, sampling: str = "singer"):
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        self.sampling, self.n = sampling, len(track_labels)
        self.by_class = [np.flatnonzero(track_labels == c) for c in np.unique(track_labels)]

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """→ [size] track indices."""
        if self.sampling == "track":
            return rng.integers(self.n, size=size)
        groups = [self.by_class[c] for c in rng.integers(len(self.by_class), size=size)]
        return np.array([g[rng.integers(len(g))] for g in groups])


class CentroidClassifier:
    """Per-class mean of L2-normalised training windows; scores = cosine to each centroid, or normalised by the
    enrolment's own statistics (`models.selfnorm`, the default), or else by the scoring backend's AS-norm when it
    keeps a cohort."""

    raw_input = False

    def __init__(self, centroids: np.ndarray, backend=None, norm: EnrolmentNorm | None = None):
        self.centroids = centroids  # [C, D], L2-normalised
        self.backend = backend
        self.norm = norm if norm is not None and norm.active else None

    @classmethod
    def fit(cls, emb: np.ndarray, labels: np.ndarray, n_classes: int, backend=None,
            score_norm: SelfNormConfig | None = None) -> "CentroidClassifier":
        norm = EnrolmentNorm.fit(emb, labels, n_classes, score_norm)
        if norm.note:
            log.warning("%s", norm.note)
        return cls(norm.centroids, backend, norm)  # plain centroids where the normalisation is off

    def scores(self, emb: np.ndarray) -> np.ndarray:
        """[N, D] → [N, C] scores against each centroid."""
        return self.norm.score(emb) if self.norm is not None else pair_scores(emb, self.centroids, self.backend)


class HeadClassifier:
    def __init__(self, head: ClassifierHead, raw_input: bool = False):
        self.head = head.eval()
        self.raw_input = raw_input  # scores() expects raw encoder outputs (Windows.features(raw=True))

    @torch.inference_mode()
    def scores(self, emb: np.ndarray) -> np.ndarray:
        """[N, D] → [N, C] softmax probabilities."""
        return F.softmax(self.head(torch.from_numpy(emb)), dim=-1).numpy()


def train_head(
    track_emb: list[np.ndarray], track_labels: np.ndarray, val_emb: np.ndarray, val_labels: np.ndarray,
    n_classes: int, cfg: HeadConfig = HeadConfig(),
) -> HeadClassifier:
    """Train on windows drawn on the fly from training tracks (`cfg.sampling`: a random singer, then one of their tracks,
    then a random window), validate on fixed windows; keep the weights of the best validation loss."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    head = ClassifierHead(track_emb[0].shape[1], n_classes, cfg.hidden, cfg.logit_scale)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    xv, yv = torch.from_numpy(val_emb), torch.from_numpy(val_labels).long()
    draw = TrackSampler(track_labels, cfg.sampling)
    best, best_state, bad = float("inf"), None, 0
    for epoch in range(cfg.max_epochs):
        head.train()
        for _ in range(cfg.epoch_steps):
            t = draw(rng, cfg.batch)
            x = np.stack([track_emb[i][rng.integers(len(track_emb[i]))] for i in t])
            loss = F.cross_entropy(head(torch.from_numpy(x)), torch.from_numpy(track_labels[t]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            v = float(F.cross_entropy(head(xv), yv))
        sched.step(v)
        if v < best - 1e-6:
            best, best_state, bad = v, copy.deepcopy(head.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.stop_patience:
                break
    log.debug("head: %d epochs, best val loss %.4f", epoch + 1, best)
    head.load_state_dict(best_state)
    return HeadClassifier(head, cfg.raw_input)
