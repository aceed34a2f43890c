"""Training the synthetic-voice detector (`singerid train-detector`), with thresholds set on held-out systems.

    tracks table (kind=real|cloned vocal stems) ──each clip (+ separated remixes)──▶ LFCC statistics per 6-s window
        ──leave-system-out folds──▶ out-of-fold scores ──▶ verdict thresholds at stated rates, pooled EER
        ──all rows──▶ the installed detector

Folds hold out one clone system at a time (`method` column; clone singers when only one system is named) together
with a share of the real singers, so a threshold is what a system and a singer never seen would meet. Augmented
copies of the clips (codecs, EQ, reverb, compression, band limiting) measured a loss on every held-out row, re-encoded
and pitch-shifted ones included, and are not offered (docs/experiments.md). Separated remixes (`remixes`, with
instrumentals) show the detector what separation leaves on both classes, as mixtures are read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .audio import load_audio
from .augment.effects import remix
from .scoring import REMIX_DB
from .synthetic import SAMPLE_RATE, LfccConfig, SyntheticDetector, Thresholds, cut, lfcc_stats, sigmoid
from .voiced import track_audio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorTrainConfig:
    features: LfccConfig = field(default_factory=LfccConfig)
    remixes: int = 0  # copies per clip mixed onto an instrumental and separated again (needs instrumentals)
    l2: float = 10.0  # weight of ½‖w‖² against the (class-balanced) sum of log-losses
    false_alarm: float = 0.05  # share of real voices allowed above the `synthetic` threshold (out of fold)
    miss: float = 0.05  # share of clones allowed below the `real` threshold (out of fold)
    max_folds: int = 16
    seed: int = 0


@dataclass
class Clips:
    """Per-window features of a table's clips: window i belongs to clip `clip[i]`; `view[i]` 0 = as given."""
    rows: pd.DataFrame  # path, kind, singer, system (`detector_rows`)
    x: np.ndarray  # [M, D]
    clip: np.ndarray  # [M]
    view: np.ndarray  # [M]

    def label(self) -> np.ndarray:
        return (self.rows["kind"].to_numpy() == "cloned")[self.clip]

    def remixed(self) -> Clips:
        """The separated remixes alone, as the clips a separated-vocal reader learns and is scored on."""
        keep = self.view > 0
        return Clips(self.rows, self.x[keep], self.clip[keep], np.zeros(int(keep.sum()), int))


def detector_rows(tracks: pd.DataFrame) -> pd.DataFrame:
    """The table's real and cloned vocal rows, with `system`: a clone's system (its `method` or `system` column), ""
    for a real voice."""
    rows = tracks[tracks["kind"].isin(["real", "cloned"])]
    if "stem" in rows:
        rows = rows[rows["stem"].fillna("vocals").isin(["vocals", ""])]
    system = next((c for c in ("method", "system") if c in rows), None)
    systems = rows[system].fillna("").astype(str) if system else pd.Series("", index=rows.index)
    rows = rows.assign(system=np.where(rows["kind"] == "cloned", systems, ""))
    if (rows["kind"] == "real").sum() < 2 or (rows["kind"] == "cloned").sum() < 2:
        raise ValueError("train-detector needs at least 2 real and 2 cloned vocal rows (kind=real|cloned, "
                         "stem=vocals: a mixture's vocal stem, e.g. from `singerid separate`)")
    return rows.reset_index(drop=True)


def clip_features(rows: pd.DataFrame, cfg: DetectorTrainConfig, progress: bool = True,
                  instrumentals: Sequence[np.ndarray] = (), separator=None) -> Clips:
    """Every clip as given (view 0) and its separated remixes (views 1…) → LFCC statistics per window. A remix is
    the clip mixed onto a random instrumental window (REMIX_DB) and read as a mixture is read (`detect_audio`); the
    remixes train the separated-vocal reader only (`Clips.remixed`)."""
    if cfg.remixes and (not len(instrumentals) or separator is None):
        raise ValueError("separated remixes need instrumentals and a separator")
    rng = np.random.default_rng(cfg.seed)
    xs, clips, views = [], [], []
    for i, path in enumerate(tqdm(rows["path"], desc="detector features", disable=not progress)):
        wave = load_audio(path, SAMPLE_RATE)
        for view in range(1 + cfg.remixes):
            if view:
                mix = remix(wave, rng, instrumentals, float(rng.uniform(*REMIX_DB))).astype(np.float32)
                windows = track_audio(mix, separator=separator).windows
            else:
                windows = cut(wave, cfg.features)[1]
            feats = lfcc_stats(windows, cfg.features)
            xs.append(feats)
            clips += [i] * len(feats)
            views += [view] * len(feats)
    return Clips(rows, np.concatenate(xs), np.array(clips), np.array(views))


def fit(x: np.ndarray, y: np.ndarray, cfg: DetectorTrainConfig, thresholds: Thresholds | None = None
        ) -> SyntheticDetector:
    """Class-balanced L2 logistic regression on standardised features (L-BFGS)."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / scale).double()
    yt = torch.from_numpy(y.astype(np.float64))
    w_cls = torch.where(yt > 0, 0.5 / yt.mean(), 0.5 / (1 - yt.mean()))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (w_cls * torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt, reduction="none")).sum()
        loss = loss + 0.5 * cfg.l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    thresholds = thresholds or Thresholds(0.5, 0.5, float("nan"), float("nan"))
    return SyntheticDetector(mean, scale, w.detach().numpy(), float(b.detach()), thresholds, cfg.features)


def folds(rows: pd.DataFrame, cfg: DetectorTrainConfig) -> list[np.ndarray]:
    """Test-clip masks: one per clone system (clone singers when fewer than 2 systems), real singers dealt round the
    folds in a seeded order."""
    clones = rows["kind"] == "cloned"
    unit = rows["system"] if rows.loc[clones, "system"].nunique() >= 2 else rows["singer"]
    groups = sorted(unit[clones].unique())
    if len(groups) > cfg.max_folds:  # many groups: dealt round the folds in a seeded order
        groups = list(np.random.default_rng(cfg.seed).permutation(groups))
    fold_of = {g: i % cfg.max_folds for i, g in enumerate(groups)}
    n = max(fold_of.values()) + 1
    singers = np.random.default_rng(cfg.seed).permutation(sorted(rows.loc[~clones, "singer"].unique()))
    real_fold = {s: i % n for i, s in enumerate(singers)}
    fold = np.where(clones, unit.map(fold_of), rows["singer"].map(real_fold)).astype(int)
    return [fold == k for k in range(n)]


def fold_detectors(clips: Clips, cfg: DetectorTrainConfig) -> Iterator[tuple[np.ndarray, SyntheticDetector]]:
    """(test-clip mask, detector fitted on the other clips as given, with a separated-vocal reader fitted on their
    remixes where there are any) per fold."""
    for test in folds(clips.rows, cfg):
        train = ~test[clips.clip]
        given, remixed = train & (clips.view == 0), train & (clips.view > 0)
        if len(np.unique(clips.label()[given])) < 2:
            continue
        detector = fit(clips.x[given], clips.label()[given], cfg)
        if remixed.any():
            detector.separated = fit(clips.x[remixed], clips.label()[remixed], cfg)
        yield test, detector


def clip_scores(detector: SyntheticDetector, clips: Clips, mask: np.ndarray) -> dict[int, float]:
    """Score in [0, 1] of each clip in `mask`, as given (view 0): mean window logit, through the sigmoid."""
    out = {}
    for i in np.flatnonzero(mask):
        sel = (clips.clip == i) & (clips.view == 0)
        out[int(i)] = sigmoid(float(detector.logits(clips.x[sel]).mean()))
    return out


def eer(positive: np.ndarray, negative: np.ndarray) -> float:
    """Equal error rate of scores where positives (clones) should score higher."""
    best = 1.0
    for t in np.unique(np.concatenate([positive, negative])):
        best = min(best, max(float((negative >= t).mean()), float((positive < t).mean())))
    return best


def set_thresholds(real: np.ndarray, clone: np.ndarray, cfg: DetectorTrainConfig) -> Thresholds:
    """`synthetic` above all but `false_alarm` of the real scores, `real` below all but `miss` of the clones';
    where the two cross, both sit halfway (no `uncertain` band)."""
    synthetic = float(np.quantile(real, 1 - cfg.false_alarm, method="higher"))
    real_t = float(np.quantile(clone, cfg.miss, method="lower"))
    if real_t >= synthetic:
        synthetic = real_t = (synthetic + real_t) / 2
    return Thresholds(round(synthetic, 4), round(real_t, 4), cfg.false_alarm, cfg.miss, round(eer(clone, real), 4))


def train_detector(tracks: pd.DataFrame, cfg: DetectorTrainConfig = DetectorTrainConfig(), progress: bool = True,
                   instrumentals: Sequence[np.ndarray] = (), separator=None) -> tuple[SyntheticDetector, dict]:
    """Tracks table → (detector fitted on every row, report): the out-of-fold EER pooled and per held-out system, and
    the thresholds set from those scores. With `cfg.remixes`, the detector also carries a reader of separated vocals,
    fitted and thresholded on the separated remixes alone (it scores what `detect_audio` separated)."""
    rows = detector_rows(tracks)
    clips = clip_features(rows, cfg, progress, instrumentals, separator)
    detector, report = _fit_held_out(rows, clips, cfg)
    if cfg.remixes:
        detector.separated, report["separated"] = _fit_held_out(rows, clips.remixed(), cfg)
    detector.meta = {"rows": {k: int((rows["kind"] == k).sum()) for k in ("real", "cloned")},
                     "systems": sorted(s for s in rows["system"].unique() if s), "remixes": cfg.remixes,
                     "out_of_fold": report}
    return detector, report


def _fit_held_out(rows: pd.DataFrame, clips: Clips, cfg: DetectorTrainConfig) -> tuple[SyntheticDetector, dict]:
    """Out-of-fold scores of the clips' view 0 → thresholds and report; then the detector fitted on all of them."""
    scores: dict[int, float] = {}
    for test, detector in fold_detectors(clips, cfg):
        scores.update(clip_scores(detector, clips, test))
    idx = np.array(sorted(scores), dtype=int)
    kind = rows["kind"].to_numpy()[idx]
    if not ((kind == "real").any() and (kind == "cloned").any()):
        raise ValueError("train-detector needs clones of at least 2 systems (a `method` column) or of 2 singers, to "
                         "set its thresholds on held-out ones")
    report = out_of_fold_report(rows, scores)
    s = np.array([scores[i] for i in idx])
    thresholds = set_thresholds(s[kind == "real"], s[kind == "cloned"], cfg)
    given = clips.view == 0
    log.info("detector: out-of-fold EER %.1f %% pooled; thresholds real <= %.3f, synthetic >= %.3f",
             100 * report["pooled_eer"], thresholds.real, thresholds.synthetic)
    return fit(clips.x[given], clips.label()[given], cfg, thresholds), {**report, "thresholds": thresholds.__dict__}


def out_of_fold_report(rows: pd.DataFrame, scores: dict[int, float]) -> dict:
    """Pooled EER (every clone against every real voice) and per held-out system (its clones against every real)."""
    idx = np.array(sorted(scores))
    s = np.array([scores[i] for i in idx])
    kind, system = rows["kind"].to_numpy()[idx], rows["system"].to_numpy()[idx]
    real = s[kind == "real"]
    per = {str(name): round(eer(s[(kind == "cloned") & (system == name)], real), 4)
           for name in sorted(set(system[kind == "cloned"]))}
    return {"pooled_eer": round(eer(s[kind == "cloned"], real), 4), "per_system_eer": per, "scored": len(idx)}
