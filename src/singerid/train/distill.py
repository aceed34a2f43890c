"""Separation-free identification: a student that reads the *mixture*, distilled from a frozen teacher that reads the
*clean vocal* of the same span (issue 11).

Per step, vocal windows (real or cloned stems; no singer labels needed) are mixed onto random windows of real
instrumentals at a random vocal-to-accompaniment ratio (VDA, default −6…+12 dB), each instrumental window resampled
by a factor in `distill_stretch` when given (new keys and tempi), a share of the examples (`distill_clean`, default
0.2) left unaccompanied so that the student keeps its teacher's clean voices; the student (initialised with the
teacher's weights) sees the mixture, the teacher the clean vocal. Loss, per unit (the GE2E's 1.6-s partials, whose
mean is the window and track embedding; an AST's 6-s window): 1 − cos to the teacher's unit, units without voice
taught the teacher's mean voice; plus a contrastive term (`distill_nce`: each unit nearer its own teacher unit than
the batch's other windows', so that the student keeps what tells voices apart). The target holds no accompaniment, so
the instrumental shortcut of the paper's Mixture model (its Fig. 4) earns nothing.

The options that measured no gain on the dev folds (a mel gate, wider inputs, frame and bank terms, vocal stretch,
layered accompaniments, separated targets, an EMA of the weights, …) were removed after commit c20fdcd.
The run itself (settings, loop, checkpoints) is `distill_run.py`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..audio import AudioError, audio_info, read_window
from ..augment.effects import resample_by
from ..data.manifest import vocal_source
from ..models import create_model, get_config, load_model, resolve_checkpoint
from ..models.backend import ScoringBackend
from ..models.identity import embedding_space

log = logging.getLogger(__name__)

SILENT_DBFS = -45.0  # a vocal (or instrumental) window quieter than this is redrawn
NCE_TEMPERATURE = 0.07
ACTIVE_REL = 0.1  # a unit (partial) whose clean-vocal RMS is under this fraction of the window's loudest is not scored


def load_teacher(spec: str, device: str = "cpu"):
    """A checkpoint (run folder, folder, file) or a preset with pretrained weights (`voice`) → (model in eval mode,
    frozen; description {"teacher", "embedding_space"}; its scoring backend or None)."""
    p = Path(spec)
    if p.exists():
        folder = resolve_checkpoint(p)
        model, backend = load_model(folder, device), ScoringBackend.load(folder)
        desc = {"teacher": str(p.resolve()), "embedding_space": embedding_space(checkpoint=str(folder))}
    else:
        try:
            cfg = get_config(spec)
        except KeyError:
            raise ValueError(f"--teacher {spec!r}: neither a checkpoint nor a model preset") from None
        if not cfg.pretrained:
            raise ValueError(f"--teacher {spec!r}: the preset has no pretrained weights; train it first and pass the run")
        model, backend = create_model(cfg).to(device), None
        desc = {"teacher": spec, "embedding_space": embedding_space(preset=spec)}
    model.eval().requires_grad_(False)
    return model, desc, backend


# ---------------------------------------------------------------------------------------------------- data
def vocal_files(tracks: pd.DataFrame) -> list[tuple[str, float]]:
    """Every readable vocal stem of the table (real and cloned, any singer): [(path, duration s)]."""
    paths = sorted({v for _, r in tracks[tracks["stem"] != "instrumental"].iterrows() if (v := vocal_source(r))})
    out = []
    for p in paths:
        try:
            out.append((p, audio_info(p).duration))
        except AudioError as e:
            log.warning("vocal stem skipped: %s", e)
    if not out:
        raise ValueError("distillation needs vocal stems (stem=vocals rows or a vocals_path column)")
    return out


def instrumental_files(insts: pd.DataFrame) -> list[tuple[str, float]]:
    out = []
    for p in sorted(set(insts["path"])):
        try:
            out.append((p, audio_info(p).duration))
        except AudioError as e:
            log.warning("instrumental skipped: %s", e)
    if not out:
        raise ValueError("distillation needs instrumentals (stem=instrumental rows, or --instrumentals)")
    return out


def split_instrumentals(insts: list, n_val: int, seed: int) -> tuple[list, list]:
    """(training, held-out validation) instrumentals: `n_val` drawn with the seed; none held out → validation reuses
    the training instrumentals."""
    if n_val <= 0:
        return insts, insts
    if n_val >= len(insts):
        raise ValueError(f"cannot hold out {n_val} of {len(insts)} instrumentals")
    held = set(np.random.default_rng([seed, 7]).choice(len(insts), n_val, replace=False).tolist())
    return [x for i, x in enumerate(insts) if i not in held], [x for i, x in enumerate(insts) if i in held]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


class DistillBatches(Dataset):
    """Index = step → {"mixture" [B, T], "vocal" [B, T], "accompaniment" [B, T], "vda" [B]}.

    Vocal files are drawn in proportion to their length. `vocal` is the clean window the teacher reads
    (peak-normalised); `mixture` = its vocal + `accompaniment` (a random instrumental window, resampled by a factor in
    `stretch` when given, scaled to a VDA drawn in `vda_db`; with probability `clean`, no accompaniment: VDA +inf),
    augmented when an augmenter is given, peak-normalised; `accompaniment` is the instrumental part at the mixture's
    scale (before any augmentation). A pure function of (seed, step)."""

    def __init__(self, vocals: list[tuple[str, float]], instrumentals: list[tuple[str, float]], batch: int,
                 seed: int, steps: int, seconds: float, vda_db: tuple[float, float] = (-6.0, 12.0),
                 sample_rate: int = 16000, augment=None, clean: float = 0.0,
                 stretch: tuple[float, float] | None = None):
        self.vocals, self.insts, self.batch, self.seed, self.steps = vocals, instrumentals, batch, seed, steps
        self.seconds, self.vda_db, self.sr, self.augment = seconds, tuple(vda_db), sample_rate, augment
        self.clean, self.stretch = clean, stretch
        w = np.array([d for _, d in vocals], float)
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        idx = np.random.default_rng([self.seed, step]).choice(len(self.vocals), size=self.batch, p=self.weights)
        rng = np.random.default_rng([self.seed, step, 1])
        items = [self.example(*self.vocals[i], rng) for i in idx]
        out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("mixture", "vocal", "accompaniment")}
        out["vda"] = torch.tensor([it["vda"] for it in items], dtype=torch.float32)
        return out

    def _window(self, path: str, duration: float, rng, seconds: float) -> np.ndarray:
        """A window of `path` louder than SILENT_DBFS (a few redraws, then the loudest drawn; a digitally silent
        window, as separated stems have between phrases, is a quiet draw)."""
        best = None
        for _ in range(6):
            start = float(rng.uniform(0.0, max(0.0, duration - seconds)))
            try:
                x = read_window(path, start, seconds, self.sr)
            except AudioError as e:
                if not e.reason.startswith("silent"):
                    raise
                x = np.zeros(int(round(seconds * self.sr)), np.float32)
            if 20 * np.log10(max(_rms(x), 1e-12)) > SILENT_DBFS:
                return x
            best = x if best is None or _rms(x) > _rms(best) else best
        return best

    def _stretched(self, path: str, duration: float, rng) -> np.ndarray:
        """An instrumental window; with `stretch`, a window `f` times longer played `f` times faster (f drawn
        log-uniformly in the range): new keys and tempi."""
        if not self.stretch:
            return self._window(path, duration, rng, self.seconds)
        f = float(np.exp(rng.uniform(*np.log(self.stretch))))
        n = int(round(self.seconds * self.sr))
        x = resample_by(self._window(path, duration, rng, self.seconds * f), f)[:n]
        return np.pad(x, (0, n - len(x)))

    def example(self, path: str, duration: float, rng: np.random.Generator) -> dict:
        v = self._window(path, duration, rng, self.seconds).astype(np.float64)
        a = self._stretched(*self.insts[int(rng.integers(len(self.insts)))], rng).astype(np.float64)
        vda = float(rng.uniform(*self.vda_db))
        if self.clean > 0 and rng.random() < self.clean:  # the clean vocal itself
            vda, acc = float("inf"), np.zeros_like(a)
        else:
            acc = a * np.sqrt(np.mean(v**2) / max(float(np.mean(a**2)), 1e-12) / 10 ** (vda / 10))
        mix = v + acc
        scale = 1.0 / max(float(np.abs(mix).max()), 1e-8)
        mixture = (mix * scale).astype(np.float32)
        if self.augment is not None:
            mixture = self.augment(mixture, rng).astype(np.float32)
            mixture /= max(float(np.abs(mixture).max()), 1e-8)
        vocal = (v / max(float(np.abs(v).max()), 1e-8)).astype(np.float32)
        return {"mixture": mixture, "vocal": vocal, "accompaniment": (acc * scale).astype(np.float32), "vda": vda}


# ---------------------------------------------------------------------------------------------------- loss
def units(model, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """wave [B, T] → (unit embeddings [B, U, D], the window's embedding [B, D]). GE2E: its 1.6-s partials
    (L2-normalised; the window embedding is their normalised mean); others: the window itself (U = 1)."""
    enc = model.encoder
    if hasattr(enc, "partials"):
        parts = enc.partials(model.frontend(wave))
        return parts, F.normalize(parts.mean(dim=1), dim=-1)
    raw = model.encode(wave)
    return raw[:, None], raw


def unit_activity(vocal: torch.Tensor, n_units: int) -> torch.Tensor:
    """[B, T] clean vocal → [B, U] bool: units whose vocal RMS is at least ACTIVE_REL × the window's loudest unit."""
    from ..models.ge2e import HOP, PARTIAL, partial_starts

    if n_units == 1:
        return torch.ones(len(vocal), 1, dtype=torch.bool, device=vocal.device)
    starts = partial_starts(vocal.shape[-1])[:n_units]
    rms = torch.stack([vocal[:, s * HOP : (s + PARTIAL) * HOP].square().mean(-1).sqrt() for s in starts], dim=1)
    return rms >= ACTIVE_REL * rms.amax(dim=1, keepdim=True).clamp_min(1e-8)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, active: torch.Tensor,
                 gap_target: torch.Tensor | None = None) -> dict:
    """Student/teacher unit embeddings [B, U, D], the active units [B, U] → {"distill_loss", "cosine"}: 1 − cos over
    the voiced units; with `gap_target` [D] (the teacher's mean voice), the units without voice are taught that fixed
    vector, with the same weight per unit. "cosine": the voiced units' mean cosine to the teacher."""
    cos = (F.normalize(student, dim=-1) * F.normalize(teacher, dim=-1)).sum(-1)  # [B, U]
    wa = active.float() / active.float().sum().clamp_min(1.0)
    if gap_target is None:
        return {"distill_loss": ((1 - cos) * wa).sum(), "cosine": (cos.detach() * wa).sum()}
    target = torch.where(active[..., None], teacher, gap_target.expand_as(teacher))
    fit = (F.normalize(student, dim=-1) * F.normalize(target, dim=-1)).sum(-1)
    return {"distill_loss": (1 - fit).mean(), "cosine": (cos.detach() * wa).sum()}


def nce_loss(student: torch.Tensor, teacher: torch.Tensor, active: torch.Tensor, tau: float = NCE_TEMPERATURE):
    """Contrastive distillation: each voiced student unit [B, U, D] must be closer to its own teacher unit than to
    the teacher units of the other windows of the batch (units of its own window are left out), so the student keeps
    what tells voices apart rather than the direction all voices share."""
    b, u = active.shape
    s = F.normalize(student[active], dim=-1)  # [N, D]
    t = F.normalize(teacher[active], dim=-1)
    win = torch.arange(b, device=active.device)[:, None].expand(b, u)[active]  # [N] window of each unit
    logits = s @ t.T / tau
    same = (win[:, None] == win[None]) & ~torch.eye(len(win), dtype=torch.bool, device=win.device)
    return F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(len(win), device=win.device))


def step_loss(student, teacher, batch: dict, nce: float, gap_target: torch.Tensor | None = None) -> dict:
    """One batch → {"loss", "distill_loss", "cosine", ("nce_loss")}; `nce`: the contrastive term's weight."""
    s_units, _ = units(student, batch["mixture"])
    with torch.no_grad():
        t_units, _ = units(teacher, batch["vocal"])
    active = unit_activity(batch["vocal"], s_units.shape[1])
    res = distill_loss(s_units, t_units, active, gap_target)
    res["loss"] = res["distill_loss"]
    if nce > 0 and active.any():  # a batch of silent draws has no voiced unit
        res["nce_loss"] = nce_loss(s_units, t_units, active)
        res["loss"] = res["loss"] + nce * res["nce_loss"]
    return res


@torch.no_grad()
def mean_voice(teacher, ds: DistillBatches, device, batches: int = 4) -> torch.Tensor:
    """[D] the teacher's mean unit embedding of clean voiced units (the target of units without voice)."""
    acc = []
    for i in range(min(batches, len(ds))):
        v = ds[i]["vocal"].to(device)
        t, _ = units(teacher, v)
        acc.append(t[unit_activity(v, t.shape[1])])
    return F.normalize(torch.cat(acc).mean(0), dim=-1)


@torch.no_grad()
def window_scores(student, teacher, batch: dict) -> dict[str, float]:
    """Mean cosine of the window embeddings to the teacher's on the clean vocal: the student's ("student") and the
    teacher's own on the mixture ("teacher_on_mixture", the no-distillation baseline); and the share of mixtures
    whose embedding is nearest its own clean vocal's among the batch's ("identified")."""
    target = F.normalize(units(teacher, batch["vocal"])[1], dim=-1)
    s = F.normalize(units(student, batch["mixture"])[1], dim=-1)
    t = F.normalize(units(teacher, batch["mixture"])[1], dim=-1)
    own = (s @ target.T).argmax(1) == torch.arange(len(s), device=s.device)
    return {"student": float((s * target).sum(-1).mean()), "teacher_on_mixture": float((t * target).sum(-1).mean()),
            "identified": float(own.float().mean())}
