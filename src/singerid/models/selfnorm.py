"""Scores normalised by the enrolment's own statistics (a catalogue's tracks, or `evaluate`'s enrolment list). Nothing
is fitted on other data, so what it does carries to any corpus: the enrolment is the cohort.

    u = l2(x − m)                    m: the mean of the enrolment's (real) track embeddings
    c_s = l2(Σ u over s's tracks)    each singer's centroid of centred tracks
    score(q, s) = ½ [(u_q·c_s − μ_q∖s) / σ_q∖s + (u_q·c_s − μ_s) / σ_s]          (AS-norm)
        μ_q∖s, σ_q∖s: mean and std of the top-k of u_q's scores against the *other* singers' centroids
        μ_s, σ_s: the same for c_s (kept per enrolment: its top-(k + 1) cohort scores)

An enrolment of fewer than k + 2 singers has no cohort worth the name: plain cosine scores against uncentred
centroids (`active` False, `note` says so). Where a trained scoring backend is in front, its output space is the
one normalised here and its own cohort (training singers) is not used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ASNORM_K = 10  # top-k cohort scores on each side (corpus-held-out folds: docs/results.md)
SCORE_NORMS = ("enrolment", "none")
# Off by default: on the corpus-held-out folds it lifts clones (P2 +5.8, P3 +11.9 points) but loses real voices
# (P1a GTSinger -13.3, P1b NUS-48E -16.7: 2 queries each), where plain cosine equals the reference encoder use.
DEFAULT_SCORE_NORM = "none"


@dataclass(frozen=True)
class SelfNormConfig:
    center: bool = True
    k: int = ASNORM_K  # 0: centring only

    @classmethod
    def named(cls, name: str) -> "SelfNormConfig | None":
        """"enrolment" → the normalisation, "none" → None (cosine, or a checkpoint's backend cohort)."""
        if name not in SCORE_NORMS:
            raise ValueError(f"score normalisation must be one of {', '.join(SCORE_NORMS)}, got {name!r}")
        return cls() if name == "enrolment" else None


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _sorted_top(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """[R, S] → the m highest of each row, best first: (values [R, m], column indices [R, m])."""
    m = min(m, scores.shape[1])
    idx = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    vals = np.take_along_axis(scores, idx, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)


def top_stats(vals: np.ndarray, idx: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of sorted top scores (vals, idx [R, m]) → mean and std [R] of each row's best k, leaving out the columns
    in `exclude` [R, E] (-1: none)."""
    ok = ~(idx[:, :, None] == exclude[:, None, :]).any(-1)
    keep = ok & (np.cumsum(ok, axis=1) <= k)
    n = np.maximum(keep.sum(axis=1), 1)
    mu = np.where(keep, vals, 0).sum(axis=1) / n
    sd = np.sqrt(np.where(keep, (vals - mu[:, None]) ** 2, 0).sum(axis=1) / n)
    return mu, np.maximum(sd, 1e-4)


class EnrolmentNorm:
    """The statistics of one enrolment: mean, centred singer centroids and each centroid's top cohort scores."""

    def __init__(self, centroids: np.ndarray, mean: np.ndarray | None = None, k: int = 0, note: str | None = None):
        self.centroids = centroids.astype(np.float32)  # [S, D] L2-normalised (centred when `mean` is set)
        self.mean, self.k, self.note = mean, k, note
        self.top = _sorted_top(self._cohort(self.centroids, np.arange(len(centroids))), k + 1) if k else None

    @property
    def active(self) -> bool:
        return self.mean is not None

    @classmethod
    def fit(cls, tracks: np.ndarray, labels: np.ndarray, n_singers: int,
            cfg: SelfNormConfig | None = SelfNormConfig()) -> "EnrolmentNorm":
        """Track embeddings [M, D] (L2) of singers `labels` [M] in [0, n_singers) → the enrolment's statistics;
        `cfg` None: plain cosine against plain centroids."""
        tracks = np.asarray(tracks, np.float64)
        labels = np.asarray(labels)

        def centroids(x: np.ndarray) -> np.ndarray:
            c = np.zeros((n_singers, x.shape[1]))
            np.add.at(c, labels, x)
            return _l2(c)

        if cfg is None:
            return cls(centroids(tracks))
        if n_singers < cfg.k + 2:
            return cls(centroids(tracks), note=f"plain cosine scores: {n_singers} singers enrolled, fewer than the "
                                               f"{cfg.k + 2} a cohort of the other singers needs")
        mean = tracks.mean(axis=0).astype(np.float32) if cfg.center else np.zeros(tracks.shape[1], np.float32)
        return cls(centroids(_l2(tracks - mean)), mean, cfg.k)

    def centre(self, x: np.ndarray) -> np.ndarray:
        """[N, D] → [N, D] as the enrolment is scored: centred on its mean and L2-normalised (unchanged when
        inactive)."""
        return _l2(np.asarray(x, np.float32) - self.mean) if self.active else np.asarray(x, np.float32)

    def _cohort(self, x: np.ndarray, own: np.ndarray) -> np.ndarray:
        """[R, D] → [R, S] scores against the centroids, each row's own singer (`own`, -1: none) at -inf."""
        s = x @ self.centroids.T
        rows = np.flatnonzero(own >= 0)
        s[rows, own[rows]] = -np.inf
        return s

    def score(self, queries: np.ndarray, candidates: np.ndarray | None = None, own: np.ndarray | None = None,
              absent: int = -1) -> np.ndarray:
        """Queries [N, D] → [N, C] normalised scores against `candidates` [C, D] (centred already; default: the
        singers' centroids) that stand for singer `own` [C] (-1: no enrolled singer), each with a cohort of the
        other singers. `absent`: a singer treated as never enrolled (left out of every cohort; calibration's unknown
        voices)."""
        u = self.centre(queries)
        default = candidates is None
        cands = self.centroids if default else candidates
        own = np.arange(len(cands)) if own is None else np.asarray(own)
        cos = u @ cands.T
        if not self.k:
            return cos
        excl = np.stack([own, np.full(len(own), absent)], axis=1)  # [C, 2] the cohort of each candidate leaves out
        vals, idx = self.top if default else _sorted_top(self._cohort(cands, own), self.k + 2)
        mu_c, sd_c = top_stats(vals, idx, self.k, excl)
        out = np.empty_like(cos)
        q_vals, q_idx = _sorted_top(u @ self.centroids.T, self.k + 2)
        for n in range(len(u)):
            mu_q, sd_q = top_stats(np.broadcast_to(q_vals[n], (len(own), q_vals.shape[1])),
                                   np.broadcast_to(q_idx[n], (len(own), q_idx.shape[1])), self.k, excl)
            out[n] = 0.5 * ((cos[n] - mu_q) / sd_q + (cos[n] - mu_c) / sd_c)
        return out
