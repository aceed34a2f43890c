"""Scores normalised by the enrolment's own statistics (`models.selfnorm`), checked against the formula by hand."""
from __future__ import annotations

import numpy as np
import pytest

from singerid.catalogue.calibrate import calibrate
from singerid.models.selfnorm import EnrolmentNorm, SelfNormConfig


def _l2(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _enrolment(n_singers=8, per=3, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_singers, dim)) + 2.0  # a shared offset: what centring removes
    x = _l2(np.repeat(centres, per, axis=0) + 0.4 * rng.standard_normal((n_singers * per, dim))).astype(np.float32)
    return x, np.repeat(np.arange(n_singers), per), rng


def _by_hand(q, tracks, labels, k, absent=-1):
    m = tracks.mean(axis=0)
    u, t = _l2(q - m), _l2(tracks - m)
    s_n = labels.max() + 1
    c = _l2(np.stack([t[labels == s].sum(axis=0) for s in range(s_n)]))
    out = np.zeros(s_n)
    for s in range(s_n):
        others = [o for o in range(s_n) if o not in (s, absent)]
        tq = np.sort(u @ c[others].T)[-k:]
        tc = np.sort(c[s] @ c[others].T)[-k:]
        cos = u @ c[s]
        out[s] = 0.5 * ((cos - tq.mean()) / tq.std() + (cos - tc.mean()) / tc.std())
    return out


def test_scores_are_centred_asnorm_against_the_other_enrolled_singers():
    x, y, rng = _enrolment()
    norm = EnrolmentNorm.fit(x, y, 8, SelfNormConfig(k=3))
    q = _l2(rng.standard_normal((2, 16)) + 2.0).astype(np.float32)
    got = norm.score(q)
    for n in range(2):
        np.testing.assert_allclose(got[n], _by_hand(q[n], x, y, 3), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(norm.score(q[n : n + 1], absent=5)[0, [0, 1, 2]],
                                   _by_hand(q[n], x, y, 3, absent=5)[[0, 1, 2]], rtol=1e-4, atol=1e-4)


def test_a_small_enrolment_falls_back_to_plain_cosine_and_says_so():
    x, y, rng = _enrolment(n_singers=4)
    norm = EnrolmentNorm.fit(x, y, 4, SelfNormConfig(k=3))
    assert not norm.active and "4 singers" in norm.note
    q = _l2(rng.standard_normal((1, 16))).astype(np.float32)
    c = _l2(np.stack([x[y == s].sum(axis=0) for s in range(4)]))
    np.testing.assert_allclose(norm.score(q), q @ c.T, atol=1e-5)


def test_calibration_scores_unknown_voices_against_a_catalogue_without_their_singer():
    """Leave-one-out with the enrolment's normalisation: the genuine score of a held-out track is against its
    singer's centroid without it; the impostor score is what its voice gets from the other singers when none of the
    cohorts holds its own singer (a voice nobody enrolled), which is higher than with its singer in the cohorts."""
    from singerid.catalogue.calibrate import _left_out_normalised

    x, y, _ = _enrolment(n_singers=10, per=4, seed=3)
    norm = EnrolmentNorm.fit(x, y, 10, SelfNormConfig(k=3))
    ((full, own_singer, impostor),) = _left_out_normalised(x, y, norm, [(x[5:6], 5)])
    a = y[5]
    assert own_singer == a and full.shape == (10,) and impostor.shape == (9,)
    by_hand = _by_hand(x[5], x, y, 3, absent=a)
    assert impostor == pytest.approx(np.delete(by_hand, a), rel=1e-4)
    assert impostor.max() > np.delete(_by_hand(x[5], x, y, 3), a).max()
    m = x.mean(axis=0)
    t = _l2(x - m)
    own = _l2(t[(y == a) & (np.arange(len(y)) != 5)].sum(axis=0))
    c = _l2(np.stack([t[y == s].sum(axis=0) for s in range(10)]))
    others = [o for o in range(10) if o != a]
    u = _l2(x[5] - m)
    tq, tc = np.sort(u @ c[others].T)[-3:], np.sort(own @ c[others].T)[-3:]
    want = 0.5 * ((u @ own - tq.mean()) / tq.std() + (u @ own - tc.mean()) / tc.std())
    assert full[a] == pytest.approx(want, rel=1e-4)
    cal = calibrate([(i, f"s{y[i]}", "", x[i : i + 1]) for i in range(len(x))], score_norm=SelfNormConfig(k=3))
    assert cal["tiers"] and cal["logistic"] is not None
