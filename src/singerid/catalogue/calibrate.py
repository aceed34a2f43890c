"""Calibration on the catalogue's own real tracks, leave-one-track-out (no re-embedding: the stored track-level
embeddings, the vectors identification scores, are used).

For each held-out track of a singer with ≥ 2 tracks: the genuine trial is its scores against every singer, its own
singer's centroid computed without it; the impostor trial is its scores against every other singer, i.e. what that
voice would get if its singer had not been enrolled (singers left out in turn: voices nobody enrolled).

Decision tiers are thresholds on the decision score (`decision_score`: the best singer's score plus its margin over
the runner-up, so a voice close to two enrolled singers at once, as a voice nobody enrolled often is, scores lower
than one close to a single singer): `match` where at most 1 % of those unknown voices score as high, `possible` at
most 10 %; below: `unknown`. Each tier keeps its measured false-acceptance rate (on how many unknown voices) and the
fraction of held-out real tracks it names right. Confidence is a logistic fit of P(the named singer is right |
decision score). The verification threshold is calibrated the same way on track pairs (same singer vs different
singers). Everything here works on score arrays, whatever computed the scores.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..models.backend import pair_scores
from ..models.selfnorm import EnrolmentNorm, SelfNormConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tier:
    name: str
    far: float  # the false-acceptance rate it is set for


TIERS = (Tier("match", 0.01), Tier("possible", 0.10))  # strictest first
BEST_MARGIN, BEST = "best+margin", "best"  # decision scores: `decision_score`


def decision_score(scores: np.ndarray, rule: str = BEST_MARGIN) -> float:
    """[S] per-singer scores → the value tiers are set on: the best score plus its margin over the runner-up
    (2 × best - second), or the best alone (`BEST`, or no runner-up). Measured on corpus-held-out dev folds, the
    margin named more enrolled voices at the same false-acceptance rates (docs/results.md)."""
    top = np.sort(np.asarray(scores, np.float64))[::-1]
    return float(top[0] if rule == BEST or len(top) < 2 else 2 * top[0] - top[1])


def threshold_at(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most `far` of the impostor scores are accepted (score >= threshold)."""
    s = np.sort(np.asarray(impostor, np.float64))[::-1]
    k = int(np.floor(far * len(s) + 1e-9))  # impostors we may accept
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))  # strictly above the (k+1)-th highest score


def tier_thresholds(genuine: np.ndarray, impostor: np.ndarray, tiers: tuple[Tier, ...] = TIERS,
                    right: np.ndarray | None = None) -> list[dict]:
    """Per tier: threshold, measured false-acceptance rate on the impostor scores (and their count), and the fraction of
    held-out real tracks named right at that tier or a stricter one (genuine >= threshold, and `right`: their own
    singer ranked first; by default, genuine above the impostor score)."""
    right = genuine > impostor if right is None else right
    out = []
    for t in tiers:
        thr = threshold_at(impostor, t.far)
        out.append({"tier": t.name, "far_target": t.far, "threshold": thr, "far": float(np.mean(impostor >= thr)),
                    "n_unknown": int(len(impostor)),
                    "accept_real": float(np.mean((genuine >= thr) & right))})
    return out


def decide(score: float, cal: dict) -> dict:
    """The decision score (`decision_score` by the calibration's rule) → {"tier": match|possible|unknown|uncalibrated,
    "far", "n_unknown"} (far: the tier's measured false-acceptance rate on voices nobody enrolled; None for unknown /
    uncalibrated)."""
    tiers = cal.get("tiers")
    if not tiers:
        return {"tier": "uncalibrated", "far": None, "n_unknown": None}
    for t in tiers:
        if score >= t["threshold"]:
            return {"tier": t["tier"], "far": round(t["far"], 4), "n_unknown": t["n_unknown"]}
    return {"tier": "unknown", "far": None, "n_unknown": tiers[-1]["n_unknown"]}


def confidence(score: float, cal: dict) -> float | None:
    """P(the named singer is right | decision score) from the calibration's logistic fit; None when uncalibrated."""
    a, b = cal.get("logistic") or (None, None)
    return None if a is None else round(float(sigmoid(a * score + b)), 4)


def track_score(windows: np.ndarray, centroids: np.ndarray, backend=None, centroid_stats=None) -> np.ndarray:
    """[N, D] windows, [S, D] centroids → [S] mean window score per singer (the identification score: cosine, or the
    scoring backend's AS-norm where it keeps a cohort)."""
    return pair_scores(windows, centroids, backend, centroid_stats).mean(axis=0)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def sigmoid(z):
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def fit_logistic(scores: np.ndarray, labels: np.ndarray, iters: int = 100, l2: float = 1e-3) -> tuple[float, float]:
    """Platt scaling: 1-D logistic regression (Newton) on smoothed targets, so perfectly separated calibration data
    still gives finite, honest confidences → (a, b) with P = sigmoid(a * s + b)."""
    pos, neg = labels.sum(), len(labels) - labels.sum()
    t = np.where(labels > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))
    a, b = 1.0, 0.0
    x = scores.astype(np.float64)
    for _ in range(iters):
        p = sigmoid(a * x + b)
        g = np.array([np.sum((p - t) * x) + l2 * a, np.sum(p - t)])
        w = p * (1 - p) + 1e-9
        h = np.array([[np.sum(w * x * x) + l2, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def calibrate(tracks: list[tuple[int, str, str, np.ndarray]], far: float = 0.05, max_tracks: int = 5000,
              seed: int = 0, tiers: tuple[Tier, ...] = TIERS, backend=None,
              queries: dict[int, np.ndarray] | None = None, score_norm: SelfNormConfig | None = None) -> dict:
    """tracks: (id, singer, path, windows [N, D]) of real voices → calibration dict (tiers, logistic, verification at
    false-acceptance rate `far`, stats). Scores as identification computes them: normalised by the enrolment's own
    statistics (`score_norm`; the left-out singer's centroid without the track, and for the unknown voice a
    catalogue without its singer, cohorts included), else `track_score` with `backend`.
    `queries`: id → [1, D] the vector a query of that track would be scored with, where it differs from what was
    enrolled (two-view enrolment: the raw reading); the left-out track is scored with it."""
    queries = queries or {}
    singers = sorted({s for _, s, _, _ in tracks})
    if len(singers) < 2:
        return {"threshold": None, "reason": "fewer than 2 singers"}
    idx = {s: i for i, s in enumerate(singers)}
    means = np.stack([_normalise(w.mean(axis=0)) for _, _, _, w in tracks])  # track embeddings [M, D]
    lab = np.array([idx[s] for _, s, _, _ in tracks])
    counts = np.bincount(lab, minlength=len(singers))
    rng = np.random.default_rng(seed)
    order = [i for i in rng.permutation(len(tracks)) if counts[lab[i]] >= 2][:max_tracks]
    held = [(queries.get(tracks[i][0], tracks[i][3]), i) for i in order]  # (as queried [1, D], row)
    norm = EnrolmentNorm.fit(means, lab, len(singers), score_norm) if score_norm is not None else None
    if norm is not None and norm.active:
        trials = _left_out_normalised(means, lab, norm, held)
    else:
        trials = _left_out_backend(means, lab, backend, held)
    if not trials:
        return {"threshold": None, "reason": "no singer has 2 or more tracks"}
    rule = BEST_MARGIN if len(singers) >= 3 else BEST  # an unknown voice of 2 singers' catalogue has no runner-up
    genuine = np.array([decision_score(g, rule) for g, _, _ in trials])  # the whole catalogue, the track's own
    right = np.array([int(np.argmax(g)) == a for g, a, _ in trials])  # singer ranked first
    impostor = np.array([decision_score(i, rule) for _, _, i in trials])  # a catalogue without the track's singer
    levels = tier_thresholds(genuine, impostor, tiers, right)
    thr = levels[-1]["threshold"]  # below the loosest tier: "unknown"
    a, b = fit_logistic(np.concatenate([genuine, impostor]), np.r_[right, np.zeros(len(impostor))].astype(float))
    logistic = [a, b] if a > 0 else None  # the model does not rank genuine above impostor: no confidence to give
    if logistic is None:
        log.warning("calibration: genuine scores are not above impostor scores; confidences disabled")
    as_queried = np.stack([_normalise(queries.get(t[0], t[3]).mean(axis=0)) for t in tracks])  # [M, D]
    same, diff = _pair_scores(as_queried, lab, rng)  # verification compares two queries
    vthr = float(np.quantile(diff, 1 - far)) if len(diff) else None
    return {
        "tiers": levels, "threshold": thr, "decision_score": rule, "logistic": logistic, "n_tracks": len(genuine),
        "genuine_accept_rate": float(np.mean((genuine >= thr) & right)),
        "impostor_accept_rate": float(np.mean(impostor >= thr)),
        "verify_threshold": vthr, "verify_eer": eer(np.r_[same, diff], np.r_[np.ones(len(same)), np.zeros(len(diff))])[0]
        if len(same) and len(diff) else None, "verify_far": far,
    }


def _left_out_normalised(means: np.ndarray, lab: np.ndarray, norm: EnrolmentNorm,
                         held: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Leave-one-out scores with the enrolment's own normalisation → per track (scores [S] against every singer: the
    own singer's centroid without the track, the others as the whole catalogue scores them; own singer; scores [S-1]
    of the other singers in a catalogue without the track's singer)."""
    centred = norm.centre(means)
    sums = np.zeros((norm.centroids.shape[0], means.shape[1]))
    np.add.at(sums, lab, centred)
    trials = []
    for q, i in held:
        a = lab[i]
        own = _normalise(sums[a] - centred[i])[None].astype(np.float32)
        full = norm.score(q)[0].astype(np.float64)
        full[a] = norm.score(q, own, np.array([a]))[0, 0]
        trials.append((full, a, np.delete(norm.score(q, absent=a)[0], a)))
    return trials


def _left_out_backend(means: np.ndarray, lab: np.ndarray, backend,
                      held: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Leave-one-out scores by cosine, or the backend's AS-norm against its training cohort (as
    `_left_out_normalised`; the other singers' scores do not depend on the track's own singer here)."""
    sums = np.zeros((lab.max() + 1, means.shape[1]))
    np.add.at(sums, lab, means)
    base = _normalise(sums)
    stats = backend.cohort_stats(base) if backend is not None else None  # AS-norm's centroid side, computed once
    trials = []
    for q, i in held:
        own = _normalise(sums[lab[i]] - means[i])  # the singer's centroid without this track
        c = base.copy()
        c[lab[i]] = own
        st = None
        if stats is not None:  # only the left-out singer's centroid changed
            st = (stats[0].copy(), stats[1].copy())
            (st[0][lab[i]],), (st[1][lab[i]],) = backend.cohort_stats(own[None])
        s = track_score(q, c, backend, st)
        trials.append((s, lab[i], np.delete(s, lab[i])))
    return trials


def _pair_scores(means: np.ndarray, lab: np.ndarray, rng, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    i, j = rng.integers(len(means), size=n), rng.integers(len(means), size=n)
    ok = i != j
    s = np.einsum("nd,nd->n", means[i[ok]], means[j[ok]])
    same = lab[i[ok]] == lab[j[ok]]
    return s[same], s[~same]


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold from trial scores and 1/0 labels."""
    order = np.argsort(-scores)
    s, y = scores[order], labels[order].astype(bool)
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    fnr = 1 - tp / max(y.sum(), 1)
    fpr = fp / max((~y).sum(), 1)
    k = int(np.argmin(np.abs(fnr - fpr)))
    return float((fnr[k] + fpr[k]) / 2), float(s[k])


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost over all thresholds."""
    order = np.argsort(-scores)
    y = labels[order].astype(bool)
    fnr = np.r_[1.0, 1 - np.cumsum(y) / max(y.sum(), 1)]
    fpr = np.r_[0.0, np.cumsum(~y) / max((~y).sum(), 1)]
    dcf = c_miss * p_target * fnr + c_fa * (1 - p_target) * fpr
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))
