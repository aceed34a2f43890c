"""Is this voice synthetic? A singing-deepfake detector over linear-frequency cepstra.

    vocal [T] at 16 kHz ──6-s windows──▶ LFCC statistics [N, 120] ──standardise, logistic──▶ logit per window
                                                                  ──mean logit, sigmoid──▶ score in [0, 1]

The features are the ASVspoof baseline's linear-frequency cepstral coefficients (30 linear triangular filters over
0-8 kHz, 20 cepstra, with Δ and ΔΔ), summarised per 6-s window by their mean and standard deviation over the window's
voiced frames (within 30 dB of its loudest): vocoders leave their traces in the fine and high-frequency structure a
mel scale blurs. Each window is level-normalised first, so loudness is not a cue. The classifier is an L2-regularised
logistic regression (`synthetic_train.train_detector`); its verdict thresholds were set on out-of-fold scores (clone
systems and real singers held out), and the rates they were set at travel with the model.

`singerid train-detector` installs a detector into `$SINGERID_HOME/detector`, where every command finds it
(`installed_detector`); without one, `detect-synthetic` exits 2 and `identify` leaves the field out with a note.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FORMAT = "singerid-synthetic-2"
NOT_INSTALLED = ("no synthetic-voice detector installed: train one with "
                 "`singerid train-detector --manifest TRACKS.csv` (rows kind=real|cloned, vocal stems)")


@dataclass(frozen=True)
class LfccConfig:
    window_seconds: float = 6.0  # the pipeline's windows: evidence at the same starts as identification
    n_fft: int = 512
    hop: int = 160
    n_filters: int = 30
    n_ceps: int = 20
    voiced_db: float = 30.0  # frames within this of the window's loudest are summarised

    @property
    def dim(self) -> int:
        return self.n_ceps * 3 * 2  # (c, Δ, ΔΔ) × (mean, std)


def _linear_filterbank(cfg: LfccConfig) -> torch.Tensor:
    """[n_filters, n_fft/2 + 1] triangular filters spaced linearly over 0 … sr/2."""
    bins = np.arange(cfg.n_fft // 2 + 1)
    edges = np.linspace(0, cfg.n_fft // 2, cfg.n_filters + 2)
    fb = np.stack([np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
                   for lo, c, hi in zip(edges, edges[1:], edges[2:])])
    return torch.from_numpy(fb.astype(np.float32))


def _dct(cfg: LfccConfig) -> torch.Tensor:
    """[n_ceps, n_filters] DCT-II (unnormalised) rows."""
    k, n = np.arange(cfg.n_ceps)[:, None], np.arange(cfg.n_filters)[None]
    return torch.from_numpy(np.cos(np.pi / cfg.n_filters * (n + 0.5) * k).astype(np.float32))


def _delta(x: torch.Tensor) -> torch.Tensor:
    """[..., T] → [..., T] regression deltas over ±2 frames."""
    p = torch.nn.functional.pad(x, (2, 2), mode="replicate")
    return (p[..., 3:-1] - p[..., 1:-3] + 2 * (p[..., 4:] - p[..., :-4])) / 10


def cut(wave: np.ndarray, cfg: LfccConfig = LfccConfig()) -> tuple[list[float], np.ndarray]:
    """[T] → (starts in s, [N, window] windows): the pipeline's windows of the whole wave (at least one)."""
    from .audio import cut_windows, window_starts

    starts = window_starts(len(wave) / SAMPLE_RATE, cfg.window_seconds)
    return starts, cut_windows(wave, starts, cfg.window_seconds, SAMPLE_RATE)


def lfcc_stats(windows: np.ndarray, cfg: LfccConfig = LfccConfig()) -> np.ndarray:
    """[N, samples] at 16 kHz → [N, 120]: mean and std of LFCC, Δ, ΔΔ over each window's voiced frames."""
    x = torch.from_numpy(np.asarray(windows, np.float32))
    x = x / (x.pow(2).mean(1, keepdim=True).sqrt() + 1e-6) * 0.05  # level is not a cue
    power = torch.stft(x, cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft), return_complex=True).abs() ** 2
    frame_db = 10 * torch.log10(power.sum(1) + 1e-12)  # [N, F]
    voiced = (frame_db > frame_db.max(1, keepdim=True).values - cfg.voiced_db).float()[:, None]  # [N, 1, F]
    bands = torch.log(torch.einsum("bk,nkt->nbt", _linear_filterbank(cfg), power) + 1e-8)
    ceps = torch.einsum("cb,nbt->nct", _dct(cfg), bands)  # [N, C, F]
    count = voiced.sum(2).clamp(min=1)
    stats = []
    for z in (ceps, _delta(ceps), _delta(_delta(ceps))):
        mean = (z * voiced).sum(2) / count
        stats += [mean, (((z - mean[..., None]) ** 2 * voiced).sum(2) / count).sqrt()]
    return torch.cat(stats, 1).numpy()


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), without overflow for any logit."""
    return float(0.5 * (1 + np.tanh(x / 2)))


@dataclass
class Thresholds:
    """Verdicts on the score: `synthetic` at or above `synthetic`, `real` at or below `real`, `uncertain` between.
    Set on out-of-fold scores: `synthetic` where at most `false_alarm` of real voices score above it, `real` where
    at most `miss` of clones score below it (each from its held-out system)."""
    synthetic: float
    real: float
    false_alarm: float
    miss: float
    eer: float | None = None  # pooled out-of-fold EER of the training table, for the record


@dataclass
class SyntheticDetector:
    mean: np.ndarray  # [D] feature standardisation
    scale: np.ndarray  # [D]
    weight: np.ndarray  # [D] logistic regression on standardised features
    bias: float
    thresholds: Thresholds
    features: LfccConfig = field(default_factory=LfccConfig)
    meta: dict = field(default_factory=dict)
    separated: SyntheticDetector | None = None  # the reader of separated vocals (trained on separated remixes)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """LFCC statistics [N, D] → [N] logits (higher: more likely synthetic)."""
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def window_logits(self, windows: np.ndarray) -> np.ndarray:
        """[N, samples] → [N] logits."""
        return self.logits(lfcc_stats(windows, self.features))

    def verdict(self, score: float) -> str:
        t = self.thresholds
        return "synthetic" if score >= t.synthetic else "real" if score <= t.real else "uncertain"

    def score_wave(self, wave: np.ndarray, source: str = "as given") -> dict:
        """[T] vocal at 16 kHz → `score_windows` of its consecutive windows."""
        return self.score_windows(*cut(np.asarray(wave, np.float32), self.features), source)

    def score_windows(self, starts: list[float], windows: np.ndarray, source: str = "as given") -> dict:
        """Windows [N, samples] of a vocal, starting at `starts` (s) → {"score", "verdict", "source", "rates",
        "windows": [{"start", "score"}]}: the score is the sigmoid of the mean window logit. A separated vocal is read
        by the separated-vocal reader where the detector has one."""
        if source == "separated vocal" and self.separated is not None:
            return self.separated.score_windows(starts, windows, source)
        logits = self.window_logits(windows)
        score = sigmoid(float(logits.mean()))
        t = self.thresholds
        return {"score": round(score, 4), "verdict": self.verdict(score), "source": source,
                "rates": {"false_alarm": t.false_alarm, "miss": t.miss},
                "windows": [{"start": s, "score": round(sigmoid(float(v)), 4)} for s, v in zip(starts, logits)]}

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        readers = {"": self, **({"separated.": self.separated} if self.separated is not None else {})}
        tensors = {p + k: torch.from_numpy(np.asarray(getattr(r, k), np.float32))
                   for p, r in readers.items() for k in ("mean", "scale", "weight")}
        save_file(tensors, str(folder / "detector.safetensors"))
        config = {"format": FORMAT, "features": asdict(self.features), "meta": self.meta,
                  **{p.rstrip(".") or "given": {"bias": float(r.bias), "thresholds": asdict(r.thresholds)}
                     for p, r in readers.items()}}
        tmp = folder / "detector.json.tmp"
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(folder / "detector.json")  # the JSON last: a folder with it is complete
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SyntheticDetector:
        folder = Path(folder)
        config = json.loads((folder / "detector.json").read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{folder}: not a synthetic-voice detector of format {FORMAT} ({config.get('format')!r})")
        try:
            t = {k: v.numpy().astype(np.float64) for k, v in load_file(str(folder / "detector.safetensors")).items()}
        except OSError:
            raise
        except Exception as e:  # safetensors' own error type for a damaged file
            raise ValueError(f"{folder}: unreadable detector weights ({e})") from e
        try:
            features = LfccConfig(**config["features"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{folder}: incomplete synthetic-voice detector ({type(e).__name__}: {e})") from e

        def reader(prefix: str, part: dict) -> SyntheticDetector:
            w = [t[prefix + k] for k in ("mean", "scale", "weight")]
            if any(len(v) != features.dim for v in w):
                raise ValueError(f"{folder}: detector weights do not match its feature configuration")
            return cls(*w, float(part["bias"]), Thresholds(**part["thresholds"]), features)

        try:
            detector = reader("", config["given"])
            detector.meta = config.get("meta", {})
            detector.separated = reader("separated.", config["separated"]) if "separated" in config else None
        except (KeyError, TypeError) as e:
            raise ValueError(f"{folder}: incomplete synthetic-voice detector ({type(e).__name__}: {e})") from e
        return detector
_INSTALLED: dict[str, SyntheticDetector | None] = {}


def detector_folder() -> Path:
    """Where `singerid train-detector` installs the detector by default, and where every command looks for it."""
    from .weights import home

    return home() / "detector"


def installed_detector(folder: str | os.PathLike | None = None) -> SyntheticDetector | None:
    """The detector in `folder` (default `$SINGERID_HOME/detector`), loaded once per process; None when absent."""
    folder = Path(folder) if folder else detector_folder()
    key = str(folder.resolve())
    if key not in _INSTALLED or _INSTALLED[key] is None:
        _INSTALLED[key] = SyntheticDetector.load(folder) if (folder / "detector.json").is_file() else None
    return _INSTALLED[key]


def detect_audio(wave: np.ndarray, detector: SyntheticDetector, separator=None) -> dict:
    """16 kHz track → `score_wave` of its vocal: the separated vocal of a mixture (only the windows the pipeline
    reads, as identification separates them), the audio itself when it is a vocal already or `separator` is None."""
    from .voiced import track_audio

    audio = track_audio(wave, separator=separator)
    return detector.score_windows(audio.starts, audio.windows, "separated vocal" if audio.separated else "as given")


def detect_file(path: str | os.PathLike, detector: SyntheticDetector | None = None, separator=None,
                max_seconds: float = 2 * 3600.0) -> dict:
    """A file → {"path", "score", "verdict", "source", "rates", "windows"} (the installed detector by default)."""
    from .audio import load_audio

    wave = load_audio(path, SAMPLE_RATE, max_seconds)
    return {"path": str(path), **detect_audio(wave, detector or require_detector(), separator)}


def require_detector(folder: str | os.PathLike | None = None) -> SyntheticDetector:
    """The installed detector, or FileNotFoundError saying how to install one."""
    detector = installed_detector(folder)
    if detector is None:
        raise FileNotFoundError(f"{Path(folder) if folder else detector_folder()}: {NOT_INSTALLED}")
    return detector
