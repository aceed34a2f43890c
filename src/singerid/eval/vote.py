"""Track decisions from window scores: majority vote (paper), top-k accuracy."""
from __future__ import annotations

import numpy as np


def majority_vote(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window scores [N, C] (probabilities or similarities) → (class ranking [C], vote counts [C]).

    Each window votes for its argmax; classes are ranked by votes, ties broken by summed scores."""
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError(f"expected [N>0, C] window scores, got {scores.shape}")
    votes = np.bincount(scores.argmax(axis=1), minlength=scores.shape[1])
    summed = scores.sum(axis=0)
    ranking = np.lexsort((-summed, -votes))  # primary key last: votes desc, then summed desc
    return ranking, votes


def mean_score_ranking(scores: np.ndarray) -> np.ndarray:
    """[N, C] → classes ranked by mean window score (an alternative decision for few windows)."""
    return np.argsort(-scores.mean(axis=0), kind="stable")


def topk_hits(rankings: list[np.ndarray], truth: list[int], k: int) -> np.ndarray:
    """[Q] booleans: is the true class among the first k of each ranking."""
    return np.array([t in r[:k] for r, t in zip(rankings, truth)], dtype=bool)
