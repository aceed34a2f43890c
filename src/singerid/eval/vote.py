"""Track decisions from window scores: majority vote (paper), top-k accuracy."""
from __future__ import annotations

import numpy as np

TOPK_COMPAT = ("ours", "reference")


def majority_vote(scores: np.ndarray, compat: str = "ours",
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window scores [N, C] (probabilities or similarities) → (class ranking [C], vote counts [C]).

    Each window votes for its argmax; classes are ranked by votes. Ties: `ours` breaks them by summed scores; `reference`
    breaks them arbitrarily (seeded `rng`), as the reference code's top-k over vote fractions does (its class order is
    arbitrary), so classes without votes fill the remaining ranks at random — figures comparable with the paper's."""
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError(f"expected [N>0, C] window scores, got {scores.shape}")
    if compat not in TOPK_COMPAT:
        raise ValueError(f"compat must be one of {TOPK_COMPAT}, got {compat!r}")
    votes = np.bincount(scores.argmax(axis=1), minlength=scores.shape[1])
    if compat == "reference":
        tiebreak = (rng if rng is not None else np.random.default_rng(0)).permutation(scores.shape[1])
    else:
        tiebreak = -scores.sum(axis=0)
    ranking = np.lexsort((tiebreak, -votes))  # primary key last: votes desc, then the tie-break
    return ranking, votes


def mean_score_ranking(scores: np.ndarray) -> np.ndarray:
    """[N, C] → classes ranked by mean window score (an alternative decision for few windows)."""
    return np.argsort(-scores.mean(axis=0), kind="stable")


def truth_rank(ranking: np.ndarray, truth: list[int]) -> int | None:
    """Best position of any true class in a ranking (a track by several singers is right if any is predicted);
    None when no true class is ranked."""
    pos = np.flatnonzero(np.isin(ranking, truth))
    return int(pos[0]) if len(pos) else None


def topk_hits(rankings: list[np.ndarray], truth: list[int | list[int]], k: int) -> np.ndarray:
    """[Q] booleans: is a true class (one, or any of several) among the first k of each ranking."""
    ranks = [truth_rank(r, t if isinstance(t, list) else [t]) for r, t in zip(rankings, truth)]
    return np.array([r is not None and r < k for r in ranks], dtype=bool)
