"""Vocal activity per window, and the paper's track filters.

(a) `energy_activity`: from a vocal stem (given or separated) relative to its mixture — a window is vocal when the
    stem is loud enough in absolute terms and relative to the mixture.
(b) `VocalClassifier`: a small CNN on log-mel windows of mixtures, trained from stems (labels come free from (a)).
Filters: tracks ≥ 75 % vocal windows for training, ≥ 50 % for evaluation sets, singers with ≥ 2 tracks.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .audio import SAMPLE_RATE, cut_windows, window_starts
from .features import LogMel, MelConfig

log = logging.getLogger(__name__)


@dataclass
class VadConfig:
    window: float = 3.0  # seconds (the paper's classifier works on 3-s windows)
    min_level_db: float = -45.0  # vocal RMS relative to full scale of the peak-normalised track
    min_ratio_db: float = -12.0  # vocal energy relative to the mixture's


def _db(x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(x, 1e-12))


def energy_activity(vocals: np.ndarray, mixture: np.ndarray | None = None, cfg: VadConfig = VadConfig(),
                    hop: float | None = None) -> tuple[list[float], np.ndarray, np.ndarray]:
    """→ (window starts s, vocal flags [N] bool, vocal-to-mixture ratio dB [N]) for windows of cfg.window seconds."""
    mix = vocals if mixture is None else mixture
    starts = window_starts(len(vocals) / SAMPLE_RATE, cfg.window, hop)
    flags, ratio = window_activity(cut_windows(vocals, starts, cfg.window), cut_windows(mix, starts, cfg.window),
                                   float(np.abs(mix).max()), cfg)
    return starts, flags, ratio


def window_activity(vocals: np.ndarray, mixture: np.ndarray, peak: float,
                    cfg: VadConfig = VadConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Vocal windows [N, T] and their mixture windows [N, T], `peak` = the track's mixture peak → (vocal flags [N]
    bool, vocal-to-mixture ratio dB [N]): rule (a) on windows, so a pipeline can judge windows it separated alone."""
    scale = max(peak, 1e-8)
    v_db = _db(np.mean((vocals / scale) ** 2, axis=1))
    ratio = v_db - _db(np.mean((mixture / scale) ** 2, axis=1))
    return (v_db > cfg.min_level_db) & (ratio > cfg.min_ratio_db), ratio


def vocal_windows(vocals: np.ndarray, mixture: np.ndarray | None, seconds: float, cfg: VadConfig = VadConfig()) -> list[float]:
    """Starts of `seconds`-long windows with vocals (at least the most vocal one, so every track yields a window)."""
    starts, flags, ratio = energy_activity(vocals, mixture, VadConfig(seconds, cfg.min_level_db, cfg.min_ratio_db))
    keep = [s for s, f in zip(starts, flags) if f]
    return keep or [starts[int(np.argmax(ratio))]]


def trim_silences(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, frame: float = 0.03, floor_db: float = -50.0,
                  smooth: int = 8, dilate: int = 3, min_keep: float = 1.6) -> np.ndarray:
    """[T] → [T'] with long silences cut out, as Resemblyzer does before embedding an utterance: 30-ms frames are
    voiced when within `floor_db` of the loud frames (95th percentile), the flags are smoothed over `smooth` frames
    and dilated by `dilate` frames on each side. The wave is kept whole when less than `min_keep` s would remain."""
    n = int(frame * sample_rate)
    frames = len(wave) // n
    if frames < smooth:
        return wave
    level = _db(np.mean(wave[: frames * n].reshape(frames, n) ** 2, axis=1))
    flags = (level > np.percentile(level, 95) + floor_db).astype(float)
    mask = np.convolve(flags, np.ones(smooth) / smooth, mode="same") >= 0.5
    mask = np.convolve(mask, np.ones(2 * dilate + 1), mode="same") > 0
    if mask.sum() * n < min_keep * sample_rate:
        return wave
    return wave[: frames * n][np.repeat(mask, n)]


class VocalClassifier(nn.Module):
    """[B, T] wave (3 s at 16 kHz) → [B] logit of "has vocals"; log-mel → 4 conv blocks → pooled linear."""

    def __init__(self, window: float = 3.0, width: int = 32):
        super().__init__()
        self.window = window
        self.frontend = LogMel(MelConfig(n_mels=64, n_frames=int(window * SAMPLE_RATE / 400)))
        layers, c = [], 1
        for w in (width, width, 2 * width, 2 * width):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.frontend(wave)
        x = (x - x.mean(dim=(1, 2), keepdim=True)) / (x.std(dim=(1, 2), keepdim=True) + 1e-5)
        h = self.net(x[:, None])  # [B, C, f, t]
        return self.head(h.amax(dim=(2, 3))).squeeze(-1)

    def save(self, folder: str | os.PathLike, meta: dict) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "vad.safetensors"))
        (folder / "vad.json").write_text(json.dumps({"format": "singerid-vad", "window": self.window, **meta}, indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "VocalClassifier":
        folder = Path(folder)
        meta = json.loads((folder / "vad.json").read_text())
        if meta.get("format") != "singerid-vad":
            raise ValueError(f"{folder}: not a singerid vocal-activity model")
        m = cls(meta["window"])
        m.load_state_dict(load_file(str(folder / "vad.safetensors")))
        return m.eval()

    @torch.inference_mode()
    def predict(self, wave: np.ndarray, hop: float | None = None) -> tuple[list[float], np.ndarray]:
        """Mixture [N] → (window starts, P(vocals) per window)."""
        starts = window_starts(len(wave) / SAMPLE_RATE, self.window, hop)
        w = cut_windows(wave / max(float(np.abs(wave).max()), 1e-8), starts, self.window)
        return starts, torch.sigmoid(self(torch.from_numpy(w))).numpy()


def train_vocal_classifier(windows: np.ndarray, labels: np.ndarray, epochs: int = 10, seed: int = 0,
                           val_fraction: float = 0.2, batch: int = 32) -> tuple[VocalClassifier, dict]:
    """windows [N, 3 s] mixtures, labels [N] {0, 1} → (model, {"val_accuracy", "n_train", "n_val"})."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    order = rng.permutation(len(windows))
    n_val = int(len(order) * val_fraction)
    val, tr = order[:n_val], order[n_val:]
    model = VocalClassifier(windows.shape[1] / SAMPLE_RATE)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.from_numpy(windows.astype(np.float32)), torch.from_numpy(labels.astype(np.float32))
    for _ in range(epochs):
        model.train()
        perm = rng.permutation(tr)
        for i in range(0, len(perm), batch):
            idx = torch.from_numpy(perm[i : i + batch])
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    acc = float("nan")
    if n_val:
        with torch.no_grad():
            acc = float(((model(x[torch.from_numpy(val)]) > 0).float() == y[torch.from_numpy(val)]).float().mean())
    return model, {"val_accuracy": acc, "n_train": int(len(tr)), "n_val": int(n_val)}


@dataclass
class TrackFilter:
    """The paper's filters: training tracks ≥ 75 % vocal, evaluation ≥ 50 %, singers with ≥ min_tracks tracks."""

    min_vocal_fraction: float = 0.75
    min_tracks: int = 2

    def apply(self, tracks: pd.DataFrame, vocal_fraction: dict[str, float]) -> pd.DataFrame:
        keep = tracks[[vocal_fraction.get(p, 0.0) >= self.min_vocal_fraction for p in tracks["path"]]]
        counts = keep.groupby("singer")["path"].transform("count")
        out = keep[counts >= self.min_tracks]
        log.info("filter %s: %d of %d tracks kept", asdict(self), len(out), len(tracks))
        return out


def _stem_lists(tracks: pd.DataFrame) -> tuple[list[str], list[str]]:
    vocals = [p for p in tracks["vocals_path"] if p] + list(tracks["path"][tracks["stem"] == "vocals"])
    inst = list(tracks["path"][tracks["stem"] == "instrumental"])
    if "accompaniment_path" in tracks:
        inst += [p for p in tracks["accompaniment_path"] if p]
    return sorted(set(vocals)), sorted(set(inst))


def windows_from_stems(vocals: list[str], insts: list[str], rng: np.random.Generator, window: float = 3.0,
                       per_pair: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Mix each vocal stem onto a random instrumental at -6..+6 dB; label every window by the stem's energy (a);
    add the instrumental's own windows as negatives. → (windows [N, window * sr], labels [N])."""
    from .audio import AudioError, load_audio

    n = int(window * SAMPLE_RATE)
    xs, ys = [], []
    for v in vocals:
        try:
            voc, acc = load_audio(v), load_audio(insts[int(rng.integers(len(insts)))])
        except AudioError as e:
            log.warning("skipped %s", e)
            continue
        acc = np.tile(acc, len(voc) // len(acc) + 1)[: len(voc)]
        acc = acc * np.sqrt(np.mean(voc**2) / max(np.mean(acc**2), 1e-12) / 10 ** (rng.uniform(-6, 6) / 10))
        mix = voc + acc
        starts, flags, _ = energy_activity(voc, mix, VadConfig(window))
        for i in rng.permutation(len(starts))[:per_pair]:
            xs += [cut_windows(mix, [starts[i]], window)[0], cut_windows(acc, [starts[i]], window)[0]]
            ys += [float(flags[i]), 0.0]
    x = np.stack(xs)
    x = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-8)
    return x.astype(np.float32)[:, :n], np.array(ys, np.float32)


def train_vad_from_stems(tracks: pd.DataFrame, out: str | os.PathLike, epochs: int = 10, seed: int = 0,
                         window: float = 3.0) -> dict:
    """Train (b) on mixtures made from the table's stems; held out: windows of vocal and instrumental files unseen in
    training. Saves the model to `out` and returns {"val_accuracy", "n_train", "n_val"}."""
    vocals, insts = _stem_lists(tracks)
    if len(vocals) < 4 or len(insts) < 2:
        raise ValueError(f"need ≥ 4 vocal stems and ≥ 2 instrumentals, have {len(vocals)} and {len(insts)}")
    rng = np.random.default_rng(seed)
    vocals, insts = list(rng.permutation(vocals)), list(rng.permutation(insts))
    nv, ni = max(1, len(vocals) // 5), max(1, len(insts) // 5)
    xtr, ytr = windows_from_stems(vocals[nv:], insts[ni:], rng, window)
    xva, yva = windows_from_stems(vocals[:nv], insts[:ni], rng, window)
    model, _ = train_vocal_classifier(xtr, ytr, epochs, seed, val_fraction=0.0)
    with torch.no_grad():
        acc = float(((model(torch.from_numpy(xva)) > 0).numpy() == (yva > 0.5)).mean())
    info = {"val_accuracy": acc, "n_train": int(len(xtr)), "n_val": int(len(xva)), "vocal_share": float(ytr.mean())}
    model.save(out, info)
    return info


def annotate_vocals(tracks: pd.DataFrame, separator=None, model: VocalClassifier | None = None,
                    window: float = 3.0, seg: float = 6.0) -> pd.DataFrame:
    """Add `vocal_fraction` (share of `window`-s windows with vocals) and `vocal_segs` (starts of `seg`-s windows with
    vocals) to a tracks table. Sources, best first: the given vocal stem, a vocal-activity model, separation."""
    from tqdm.auto import tqdm

    from .audio import AudioError, load_audio

    fracs, segs = [], []
    for _, r in tqdm(tracks.iterrows(), total=len(tracks), desc="vocal activity", disable=None, unit="track"):
        try:
            mix = load_audio(r["path"])
            stem = r["path"] if r.get("stem") == "vocals" else (r.get("vocals_path") or None)
            if stem:
                voc = mix if stem == r["path"] else load_audio(stem)
                _, flags, _ = energy_activity(voc, None if stem == r["path"] else mix, VadConfig(window))
                seg_starts = vocal_windows(voc, None if stem == r["path"] else mix, seg)
            elif model is not None:
                s3, p = model.predict(mix)
                flags = p > 0.5
                seg_starts = [s for s in window_starts(len(mix) / SAMPLE_RATE, seg)
                              if np.mean([q for t, q in zip(s3, p) if s <= t < s + seg] or [0.0]) > 0.5]
            elif separator is not None:
                voc = separator.separate(mix)["vocals"]
                _, flags, _ = energy_activity(voc, mix, VadConfig(window))
                seg_starts = vocal_windows(voc, mix, seg)
            else:
                raise ValueError("vocal activity needs a vocal stem, a vocal-activity model or a separator")
            fracs.append(float(np.mean(flags)))
            segs.append(json.dumps([float(s) for s in seg_starts]))
        except AudioError as e:
            log.warning("skipped %s", e)
            fracs.append(0.0)
            segs.append("")
    return tracks.assign(vocal_fraction=fracs, vocal_segs=segs)
