"""A learned scoring backend on frozen embeddings: centering, then within-class covariance normalisation (WCCN) or
LDA, then L2 normalisation; and score normalisation against a cohort of training singers (adaptive symmetric
normalisation, AS-norm). Fitted on labelled embeddings of a training table (real tracks and known clones, a clone
labelled with the singer it imitates, and, where instrumentals are given, the same voices remixed and separated
again, so directions where clones and separation artefacts differ from the clean real voice are damped), and stored in
a checkpoint beside the model (`backend.safetensors` + its entry in config.json).

    x [N, D] → normalise((x - mean) @ transform) [N, d]
    score(q, c) = ½ [(q·c − μ_q) / σ_q + (q·c − μ_c) / σ_c]   μ, σ: of each side's top-k cosines to the cohort
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

log = logging.getLogger(__name__)

KINDS = ("center", "wccn", "lda")
FILE = "backend.safetensors"


@dataclass
class BackendConfig:
    kind: str = "wccn"
    shrink: float = 0.3  # WCCN/LDA: within-class covariance shrunk towards its mean variance (small data)
    dim: int | None = None  # LDA output dimension (default: classes - 1, at most D)
    asnorm_k: int = 10  # AS-norm: the top-k cohort scores of each side (0: plain cosine scores, no cohort kept)


class ScoringBackend:
    def __init__(self, mean: np.ndarray, transform: np.ndarray, info: dict, cohort: np.ndarray | None = None):
        self.mean = mean.astype(np.float32)  # [D]
        self.transform = transform.astype(np.float32)  # [D, d]
        self.info = info
        self.cohort = None if cohort is None else cohort.astype(np.float32)  # [K, d] training singers, L2-normalised

    @property
    def dim(self) -> int:
        return int(self.transform.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[N, D] → [N, d], L2-normalised."""
        y = (np.asarray(x, np.float32) - self.mean) @ self.transform
        return (y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def cohort_stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """[N, d] → (mean [N], std [N]) of each row's top-k cohort scores; None where scores are plain cosines."""
        k = int(self.info.get("asnorm_k", 0))
        if self.cohort is None or not k:
            return None
        return _top_stats(x @ self.cohort.T, k)

    def score(self, queries: np.ndarray, centroids: np.ndarray,
              centroid_stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Backend-space queries [N, d] and singer centroids [C, d] → [N, C] scores: AS-norm against the cohort
        when the backend keeps one, else cosine similarities. `centroid_stats`: the centroids' `cohort_stats`, when
        the caller keeps them."""
        cos = queries @ centroids.T
        stats = centroid_stats if centroid_stats is not None else self.cohort_stats(centroids)
        if stats is None:
            return cos
        (mq, sq), (mc, sc) = self.cohort_stats(queries), stats  # [N], [C]
        return (0.5 * ((cos - mq[:, None]) / sq[:, None] + (cos - mc[None]) / sc[None])).astype(np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, cfg: BackendConfig = BackendConfig()) -> "ScoringBackend":
        """x [N, D] L2-normalised embeddings, labels [N] (singer per row) → a fitted backend."""
        if cfg.kind not in KINDS:
            raise ValueError(f"backend kind must be one of {KINDS}, got {cfg.kind!r}")
        x = np.asarray(x, np.float64)
        labels = np.asarray(labels)
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(f"a scoring backend needs at least 2 singers, have {len(classes)}")
        mean = x.mean(axis=0)
        d = x.shape[1]
        info = {"kind": cfg.kind, "shrink": cfg.shrink, "n": int(len(x)), "classes": int(len(classes)),
                "asnorm_k": int(cfg.asnorm_k)}
        if cfg.kind == "center":
            transform = np.eye(d)
        elif cfg.kind == "wccn":
            vals, vecs = np.linalg.eigh(_within_covariance(x, labels, classes, cfg.shrink))
            transform = vecs / np.sqrt(np.maximum(vals, 1e-10))
        else:
            centroids = np.stack([x[labels == c].mean(axis=0) for c in classes]) - mean
            between = centroids.T @ centroids / len(classes)
            w_vals, w_vecs = np.linalg.eigh(_within_covariance(x, labels, classes, cfg.shrink))
            white = w_vecs / np.sqrt(np.maximum(w_vals, 1e-10))  # within-class whitening, then the between-class axes
            b_vals, b_vecs = np.linalg.eigh(white.T @ between @ white)
            info["dim"] = min(cfg.dim or len(classes) - 1, d)
            transform = white @ b_vecs[:, ::-1][:, : info["dim"]]
        backend = cls(mean, transform, info)
        if cfg.asnorm_k:  # the cohort: each training singer's centroid in the backend's space
            y = backend.apply(x)
            backend.cohort = _l2(np.stack([y[labels == c].mean(axis=0) for c in classes]))
        return backend

    def save(self, folder: str | os.PathLike) -> None:
        """Write backend.safetensors into a checkpoint folder and record it in its config.json."""
        folder = Path(folder)
        tensors = {"mean": self.mean, "transform": self.transform}
        save_file(tensors | ({"cohort": self.cohort} if self.cohort is not None else {}), str(folder / FILE))
        cfg = folder / "config.json"
        if cfg.is_file():
            meta = json.loads(cfg.read_text())
            meta["backend"] = self.info
            tmp = cfg.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta, indent=2))
            os.replace(tmp, cfg)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ScoringBackend | None":
        """The backend stored in a checkpoint folder, or None."""
        folder = Path(folder)
        if not (folder / FILE).is_file():
            return None
        t = load_file(str(folder / FILE))
        info = json.loads((folder / "config.json").read_text()).get("backend", {}) if (folder / "config.json").is_file() else {}
        return cls(t["mean"], t["transform"], info, t.get("cohort"))


def pair_scores(queries: np.ndarray, centroids: np.ndarray, backend=None, centroid_stats=None) -> np.ndarray:
    """[N, D] queries, [C, D] centroids → [N, C]: the backend's scores (AS-norm) where it has a cohort, else cosine."""
    return backend.score(queries, centroids, centroid_stats) if backend is not None else queries @ centroids.T


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _top_stats(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] cohort scores → (mean [N], std [N]) of each row's top-k."""
    top = np.sort(scores, axis=1)[:, -min(k, scores.shape[1]):]
    return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-4)


def _within_covariance(x: np.ndarray, labels: np.ndarray, classes: np.ndarray, shrink: float) -> np.ndarray:
    """[D, D] mean within-class covariance, shrunk towards (its mean variance) × I."""
    d = x.shape[1]
    within = np.zeros((d, d))
    for c in classes:
        xc = x[labels == c]
        xc = xc - xc.mean(axis=0)
        within += xc.T @ xc / max(len(xc), 1)
    within /= len(classes)
    return (1 - shrink) * within + shrink * np.trace(within) / d * np.eye(d)
