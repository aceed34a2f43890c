"""Training and held-out evaluation of the vocal-activity model (`vad.VocalActivityModel`).

Examples are 3-s windows of vocal stems mixed onto real instrumentals, made fresh from a seeded generator: the stem
is placed at a random offset in a longer stretch of an instrumental (so windows cross its start and end), at a random
vocal-to-accompaniment ratio (−6…+12 dB, the vocal's level measured over its active frames); some windows are the
unaccompanied stem, some the instrumental alone. Label: the vocal stem is active (50-ms frames within 30 dB of its
loud frames) in ≥ half the window. The encoder is frozen, so each window's features are computed once.

Held out, by file: the vocal stems of a seeded fifth of the singers (a clone counts as its target and its source
singer; clones that cross the split are used by neither side) and a seeded fifth of each table's instrumentals.
Evaluated on every 3-s window of held-out files: each held-out stem mixed onto held-out instrumentals and alone, and
each held-out instrumental alone.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .audio import SAMPLE_RATE, load_audio
from .augment.effects import resample_by
from .vad import VadModelConfig, VocalActivityModel

log = logging.getLogger(__name__)
FRAME = 800  # 50 ms
KINDS = ("instrumental", "vocal", "mixture")


@dataclass
class VadTrainConfig:
    model: VadModelConfig = field(default_factory=VadModelConfig)
    windows: int = 8000  # training windows generated (16 000 measured no better with musicnn's features)
    ratio_db: tuple[float, float] = (-6.0, 12.0)  # vocal-to-accompaniment ratio of mixtures
    instrumental_share: float = 0.35  # draws giving one window of an instrumental alone (the others give three)
    vocal_share: float = 0.15  # draws giving three windows of an unaccompanied stem
    pad: float = 3.0  # at most this much instrumental before and after a stem, s
    stretch: tuple[float, float] = (0.8, 1.25)  # training instrumentals resampled by a random factor (pitch + tempo)
    min_vocal: float = 0.5  # label: the vocal is active in ≥ this share of the window
    ambiguous: tuple[float, float] = (0.25, 0.75)  # vocal shares reported apart as ambiguous
    held_out: float = 0.2  # share of singers and of instrumentals held out
    test_mixes: int = 2  # held-out mixtures per held-out stem
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0


def stem_activity(voc: np.ndarray, floor_db: float = -30.0) -> np.ndarray:
    """[T] vocal stem → [ceil(T / 800)] bool: 50-ms frames within `floor_db` of the stem's loud frames (95th pct)."""
    k = len(voc) // FRAME
    out = np.zeros(-(-len(voc) // FRAME), bool)
    if k:
        level = 10 * np.log10(np.mean(voc[: k * FRAME].reshape(k, FRAME) ** 2, axis=1) + 1e-12)
        out[:k] = level > np.percentile(level, 95) + floor_db
    return out


def split_files(tables: list[pd.DataFrame], share: float = 0.2, seed: int = 0) -> dict[str, list[str]]:
    """Tracks tables → {"train_vocals", "test_vocals", "train_instrumentals", "test_instrumentals"}: paths, held out
    by singer (stems) and by file within each table (instrumentals), seeded."""
    rng = np.random.default_rng(seed)
    t = pd.concat(tables, ignore_index=True)
    voc = t[t["stem"] == "vocals"]
    source = voc["source_singer"].fillna("").where(voc["source_singer"].fillna("") != "", voc["singer"]) \
        if "source_singer" in voc else voc["singer"]
    singers = sorted(set(voc["singer"]) | set(source))
    held = set(rng.permutation(singers)[: max(1, round(share * len(singers)))])
    out = {"test_vocals": list(voc["path"][voc["singer"].isin(held) & source.isin(held)]),
           "train_vocals": list(voc["path"][~voc["singer"].isin(held) & ~source.isin(held)]),
           "train_instrumentals": [], "test_instrumentals": []}
    for tab in tables:
        inst = list(rng.permutation(sorted(tab["path"][tab["stem"] == "instrumental"])))
        n = max(1, round(share * len(inst))) if len(inst) > 1 else 0
        out["test_instrumentals"] += inst[:n]
        out["train_instrumentals"] += inst[n:]
    return out


class Mixer:
    """Seeded source of labelled 3-s windows from vocal stems and instrumentals (decoded once, kept in memory)."""

    def __init__(self, vocals: list[str], instrumentals: list[str], cfg: VadTrainConfig, rng: np.random.Generator):
        self.cfg, self.rng, self.n = cfg, rng, int(cfg.model.window * SAMPLE_RATE)
        self.vocals = [w for w in map(_load, vocals) if w is not None]
        self.insts = [w for w in map(_load, instrumentals) if w is not None]
        if not self.vocals or not self.insts:
            raise ValueError(f"need vocal stems and instrumentals, have {len(self.vocals)} and {len(self.insts)}")

    def track(self, voc: np.ndarray, inst: np.ndarray | None, ratio_db: float, pad: bool = True):
        """→ (peak-normalised wave [T], vocal activity per frame): the stem at a random offset over the
        instrumental."""
        before, after = self.rng.integers(0, int(self.cfg.pad * SAMPLE_RATE) + 1, 2) if pad else (0, 0)
        n = max(len(voc) + before + after, self.n)
        before = before - before % FRAME
        wave = np.zeros(n, np.float32)
        wave[before : before + len(voc)] = voc
        act, a = np.zeros(-(-n // FRAME), bool), stem_activity(voc)
        act[before // FRAME : before // FRAME + len(a)] = a[: len(act) - before // FRAME]
        if inst is not None:
            off = int(self.rng.integers(0, max(1, len(inst) - n)))
            acc = np.tile(inst, n // len(inst) + 2)[off : off + n]
            active = np.repeat(a, FRAME)[: len(voc)]
            level = np.mean(voc[active] ** 2) if active.any() else np.mean(voc**2)
            wave = wave + acc * np.sqrt(level / max(np.mean(acc**2), 1e-12) / 10 ** (ratio_db / 10))
        return wave / max(float(np.abs(wave).max()), 1e-8), act

    def share(self, act: np.ndarray, start: int) -> float:
        return float(act[start // FRAME : (start + self.n) // FRAME].mean())

    def sample(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """→ (windows [count, n], vocal share [count], kind [count] (index into KINDS)), drawn at random; the
        instrumentals resampled by a random factor in `cfg.stretch` (new pitches and tempi)."""
        xs, ys, ks, cfg, rng = [], [], [], self.cfg, self.rng
        while len(xs) < count:
            r, inst = rng.random(), _stretch(self.insts[int(rng.integers(len(self.insts)))], rng, cfg.stretch)
            if r < cfg.instrumental_share:
                s = int(rng.integers(0, max(1, len(inst) - self.n)))
                xs.append(_fit(inst[s : s + self.n], self.n) / max(float(np.abs(inst).max()), 1e-8))
                ys.append(0.0), ks.append(0)
                continue
            alone = r < cfg.instrumental_share + cfg.vocal_share
            wave, act = self.track(self.vocals[int(rng.integers(len(self.vocals)))], None if alone else inst,
                                   float(rng.uniform(*cfg.ratio_db)))
            for _ in range(3):  # three windows of each made track
                s = int(rng.integers(0, len(wave) - self.n + 1))
                xs.append(wave[s : s + self.n]), ys.append(self.share(act, s)), ks.append(1 if alone else 2)
        return np.stack(xs[:count]), np.array(ys[:count]), np.array(ks[:count])

    def every_window(self, mixes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """→ (windows, vocal share, kind, ratio dB (nan unless a mixture), track id): every window of every file,
        each stem mixed `mixes` times onto random instrumentals and once alone (no padding), each instrumental alone."""
        xs, ys, ks, rs, ids = [], [], [], [], []
        for voc in self.vocals:
            runs = [(self.insts[int(self.rng.integers(len(self.insts)))], float(self.rng.uniform(*self.cfg.ratio_db)))
                    for _ in range(mixes)] + [(None, np.nan)]
            for inst, ratio in runs:
                wave, act, track = *self.track(voc, inst, ratio, pad=inst is not None), len(set(ids))
                for s in range(0, len(wave) - self.n + 1, self.n):
                    xs.append(wave[s : s + self.n]), ys.append(self.share(act, s))
                    ks.append(1 if inst is None else 2), rs.append(ratio), ids.append(track)
        for inst in self.insts:
            wave, track = inst / max(float(np.abs(inst).max()), 1e-8), len(set(ids))
            for s in range(0, max(1, len(wave) - self.n + 1), self.n):
                xs.append(_fit(wave[s : s + self.n], self.n)), ys.append(0.0), ks.append(0), rs.append(np.nan)
                ids.append(track)
        return np.stack(xs), np.array(ys), np.array(ks), np.array(rs), np.array(ids)


def _stretch(x: np.ndarray, rng: np.random.Generator, factors: tuple[float, float], most: int = 20 * SAMPLE_RATE):
    """A random excerpt (≤ `most` samples after resampling) of `x`, resampled by a factor in `factors` (linear)."""
    f = float(np.exp(rng.uniform(*np.log(factors))))
    span = min(len(x), int(most * f))
    start = int(rng.integers(0, len(x) - span + 1))
    return resample_by(x[start : start + span], f)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, (0, n - len(x))) if len(x) < n else x


def _load(path: str) -> np.ndarray | None:
    from .audio import AudioError

    try:
        return load_audio(path)
    except AudioError as e:
        log.warning("skipped %s", e)
        return None


def fit_head(model: VocalActivityModel, feats: torch.Tensor, labels: np.ndarray, cfg: VadTrainConfig) -> None:
    """Train the head on frozen features [N, P, 1104] with labels [N] {0, 1}, classes weighted to balance; the loss
    reads each window's logit as inference does (the mean of its partials'), not each partial's."""
    torch.manual_seed(cfg.seed)
    flat = feats.reshape(-1, feats.shape[-1])
    model.mean.copy_(flat.mean(0))
    model.scale.copy_(flat.std(0) + 1e-5)
    y = torch.from_numpy(labels.astype(np.float32))
    pos = float(y.mean().clamp(1e-3, 1 - 1e-3))
    opt = torch.optim.AdamW(model.head.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * -(-len(y) // 128))  # warm-up, anneal
    model.head.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(y)).split(128):
            logits = model.head_logits(feats[idx])  # [b]: the window's logit, the mean of its partials' (as at inference)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y[idx],
                                                                  pos_weight=torch.tensor((1 - pos) / pos))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.head.eval()


def held_out_report(p: np.ndarray, share: np.ndarray, kind: np.ndarray, ratio: np.ndarray, cfg: VadTrainConfig) -> dict:
    """P(vocals) [N] on held-out windows → accuracies: all windows, without the ambiguous band, per kind, per
    ratio band."""
    y, ok = share >= cfg.min_vocal, (p > 0.5) == (share >= cfg.min_vocal)
    lo, hi = cfg.ambiguous
    clear = (share <= lo) | (share >= hi)
    r = {"accuracy": float(ok.mean()), "n": len(ok), "vocal_share": float(y.mean()),
         "accuracy_clear": float(ok[clear].mean()), "n_clear": int(clear.sum())}
    for i, k in enumerate(KINDS):
        r[f"accuracy_{k}"], r[f"n_{k}"] = float(ok[kind == i].mean()), int((kind == i).sum())
    for a, b in ((-6, 0), (0, 6), (6, 12)):
        sel = (ratio >= a) & (ratio < b)
        r[f"accuracy_mixture_{a:+d}_{b:+d}dB"] = float(ok[sel].mean()) if sel.any() else float("nan")
    return r


def train_vad(tables: list[pd.DataFrame], out: str | os.PathLike | None, cfg: VadTrainConfig = VadTrainConfig(),
              encoder: nn.Module | None = None, splits: int = 1) -> tuple[VocalActivityModel, dict]:
    """Train on the tables' stems (stem=vocals rows) and instrumentals (stem=instrumental rows), evaluate on the held
    out files, save to `out` (when given) → (model, report). With `splits` > 1, `splits` held-out splits (seeds
    cfg.seed, cfg.seed + 1, …) are trained and evaluated: the report pools their held-out windows and lists each
    split's accuracy (which held-out instrumentals a split draws moves its figure by several points); the model saved
    is the first split's."""
    if splits < 1:
        raise ValueError(f"splits must be ≥ 1, got {splits}")
    model, held, extra = _train_split(tables, cfg, encoder)
    runs = [(held, extra)]
    for i in range(1, splits):
        runs.append(_train_split(tables, replace(cfg, seed=cfg.seed + i), model.encoder)[1:])
    pooled = [np.concatenate([h[j] for h, _ in runs]) for j in range(4)]
    report = {**held_out_report(*pooled, cfg), **extra, "config": _jsonable(asdict(cfg))}
    if splits > 1:
        report["splits"] = [{"seed": cfg.seed + i, **held_out_report(*h, cfg), **e} for i, (h, e) in enumerate(runs)]
    if out is not None:
        model.save(out, {"held_out": report})
    return model, report


def _train_split(tables: list[pd.DataFrame], cfg: VadTrainConfig, encoder: nn.Module | None):
    """One held-out split (cfg.seed) → (model trained on its training files, (P(vocals), vocal share, kind, ratio)
    of every held-out window, facts about the training)."""
    t0 = time.perf_counter()
    files = split_files(tables, cfg.held_out, cfg.seed)
    log.info("vocal-activity split %d: %s", cfg.seed, {k: len(v) for k, v in files.items()})
    model = VocalActivityModel(cfg.model, encoder)
    train = Mixer(files["train_vocals"], files["train_instrumentals"], cfg, np.random.default_rng(cfg.seed))
    feats, shares = [], []
    for i in range(0, cfg.windows, 1000):  # in chunks: the windows themselves are never all in memory
        x, share, _ = train.sample(min(1000, cfg.windows - i))
        feats.append(model.features(torch.from_numpy(x.astype(np.float32, copy=False))).clone())  # [n, P, 1104]
        shares.append(share)
    share = np.concatenate(shares)
    fit_head(model, torch.cat(feats), share >= cfg.min_vocal, cfg)
    train_s = time.perf_counter() - t0
    test = Mixer(files["test_vocals"], files["test_instrumentals"], cfg, np.random.default_rng(cfg.seed + 1))
    xt, st, kt, rt, _ = test.every_window(cfg.test_mixes)
    with torch.inference_mode():
        feats_t = model.features(torch.from_numpy(xt.astype(np.float32, copy=False)))
        p = torch.sigmoid(model.head_logits(feats_t)).numpy()
    extra = {"train_windows": len(share), "train_vocal_share": float((share >= cfg.min_vocal).mean()),
             "train_seconds": round(train_s, 1), "files": {k: len(v) for k, v in files.items()}}
    return model, (p, st, kt, rt), extra


def _jsonable(d):
    return {k: _jsonable(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in d.items()}
