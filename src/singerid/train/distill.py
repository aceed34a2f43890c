"""Separation-free identification: a student that reads the *mixture*, distilled from a frozen teacher that reads the
*clean vocal* of the same span (issue 11).

Per step, vocal windows (real or cloned stems; no singer labels needed) are mixed onto random windows of real
instrumentals at a random vocal-to-accompaniment ratio (VDA, default −6…+12 dB), a share of them (`distill_clean`,
default 0.2) left unaccompanied so that the student keeps its teacher's clean voices; the student (initialised with the
teacher's weights) sees the mixture, the teacher the clean vocal. Loss: cosine distance (or MSE) between the student's
and the teacher's embeddings of every voiced unit (the GE2E's 1.6-s partials, whose mean is the window and track
embedding; an AST's 6-s window); plus a contrastive term (`distill_nce`: each unit nearer its own teacher unit than the
batch's other windows' — cosine alone let the student drift towards the direction all voices share and lose what tells
them apart, measured on the dev folds); units without voice are taught the teacher's mean voice (`distill_gaps`);
optionally the singer-level NT-Xent on the student's mixture projections (`distill_contrastive` > 0: the batch is then
made of same-singer pairs from two songs), and a neighbourhood term over a bank of earlier teacher units
(`distill_bank` > 0: the student must rank the other voices as the teacher does), and the top LSTM layer's output
at every frame of the voiced units (`distill_frames` > 0, GE2E). Vocals beyond the table's can be
added (`distill_vocals`: e.g. vocals separated from releases). The target holds no accompaniment, so the instrumental shortcut of the
paper's Mixture model (its Fig. 4) earns nothing.

The student checkpoint is self-describing: `distilled` names its teacher, `input: mixture` tells identify/evaluate to
skip separation, `embedding_space` is the teacher's (a catalogue enrolled with one can be queried with the other), and
the teacher's scoring backend is copied beside it (same space). The run itself (settings, loop, checkpoints) is
`distill_run.py`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..audio import AudioError, audio_info, read_window
from ..augment.effects import resample_by
from ..data.manifest import vocal_source
from ..data.pairs import PairBatches
from ..losses import nt_xent
from ..models import create_model, get_config, load_model, resolve_checkpoint
from ..models.identity import embedding_space

log = logging.getLogger(__name__)

SILENT_DBFS = -45.0  # a vocal (or instrumental) window quieter than this is redrawn
NCE_TEMPERATURE = 0.07
ACTIVE_REL = 0.1  # a unit (partial) whose clean-vocal RMS is under this fraction of the window's loudest is not scored


# ---------------------------------------------------------------------------------------------------- teacher
def load_teacher(spec: str, device: str = "cpu"):
    """A checkpoint (run folder, folder, file) or a preset with pretrained weights (`voice`) → (model in eval mode,
    frozen; description {"teacher", "embedding_space"}; its scoring backend or None)."""
    from ..models.backend import ScoringBackend

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
def vocal_files(tracks: pd.DataFrame) -> list[tuple[str, str, float]]:
    """Every readable vocal stem of the table (real and cloned, any singer): [(path, singer, duration s)]."""
    rows = tracks[tracks["stem"] != "instrumental"]
    paths = {}
    for _, r in rows.iterrows():
        v = vocal_source(r)
        if v and v not in paths:
            paths[v] = str(r["singer"])
    out = []
    for p, s in sorted(paths.items()):
        try:
            out.append((p, s, audio_info(p).duration))
        except AudioError as e:
            log.warning("vocal stem skipped: %s", e)
    if not out:
        raise ValueError("distillation needs vocal stems (stem=vocals rows or a vocals_path column)")
    return out


def cloned_files(tracks: pd.DataFrame) -> set[str]:
    """The vocal stems of the table's cloned (AI-converted) tracks."""
    if "kind" not in tracks:
        return set()
    return {v for _, r in tracks[tracks["kind"] == "cloned"].iterrows() if (v := vocal_source(r))}


def more_vocal_files(specs: tuple[str, ...] | None, known: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """`known` plus the vocal stems of `specs` (tables: their vocal stems; folders: every audio file, singer unknown),
    each file once: voices for the label-free terms beyond the training table's singers."""
    from ..data.manifest import load_tracks
    from .recipe import audio_files

    out, seen = list(known), {os.path.realpath(p) for p, _, _ in known}
    for spec in specs or ():
        p = Path(spec)
        if p.is_dir():
            found = []
            for f in audio_files(p):
                try:
                    found.append((f, "", audio_info(f).duration))
                except AudioError as e:
                    log.warning("vocal stem skipped: %s", e)
        else:
            found = vocal_files(load_tracks(p))
        if not found:
            raise ValueError(f"--distill-vocals {spec}: no readable vocal stem")
        out += [v for v in found if os.path.realpath(v[0]) not in seen]
        seen |= {os.path.realpath(v[0]) for v in found}
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


def draw_weights(vocals: list[tuple[str, str, float]], real: float | None = None,
                 cloned: set[str] = frozenset()) -> np.ndarray:
    """Each vocal file's probability of being drawn: in proportion to its length; with `real`, the files not in
    `cloned` share that much of the mass (each in proportion to its length within its kind), the clones the rest."""
    w = np.array([d for _, _, d in vocals], float)
    if real is None:
        return w / w.sum()
    if not 0.0 <= real <= 1.0:
        raise ValueError(f"the real voices' share must be in [0, 1], not {real}")
    is_clone = np.array([p in cloned for p, _, _ in vocals])
    for mass, part, kind in ((real, ~is_clone, "real"), (1.0 - real, is_clone, "cloned")):
        if mass > 0 and not part.any():
            raise ValueError(f"a share of {mass:.2f} of the draws asked of {kind} vocal stems, and the pool has none")
        w[part] *= mass / max(w[part].sum(), 1e-12)
    return w / w.sum()


class DistillBatches(Dataset):
    """Index = step → {"mixture" [B, T], "vocal" [B, T], "accompaniment" [B, T], "vda" [B], "singers" [B]}.

    `vocal` is the clean window the teacher reads (peak-normalised; with `vocal_stretch`, resampled by a factor drawn in
    that range: a voice of another pitch and timbre, which teacher and student both hear, so the label-free term
    covers voices beyond the training singers'); `mixture` = its vocal + `accompaniment` (a random
    instrumental window, resampled by a factor in `stretch` when given; with probability `layered`, a window of a
    second instrumental added under it at −12…0 dB: band textures no single instrumental has; scaled to a VDA drawn
    in `vda_db`; with probability `clean`, no accompaniment: VDA +inf, so the student keeps the teacher's clean
    voices), augmented when an augmenter is given, peak-normalised; `accompaniment` is the instrumental part at the
    mixture's scale (before any augmentation). A pure function of (seed, step). With `pairs` (a vocal-mode
    PairBatches), views 2i and 2i+1 are two songs of one singer."""

    def __init__(self, vocals: list[tuple[str, str, float]], instrumentals: list[tuple[str, float]], batch: int,
                 seed: int, steps: int, seconds: float, vda_db: tuple[float, float] = (-6.0, 12.0),
                 sample_rate: int = 16000, augment=None, pairs: PairBatches | None = None, clean: float = 0.0,
                 stretch: tuple[float, float] | None = None, vocal_stretch: tuple[float, float] | None = None,
                 layered: float = 0.0, real: float | None = None, cloned: set[str] = frozenset()):
        if vocal_stretch and pairs is not None:
            raise ValueError("a vocal stretch changes the voice: it cannot be combined with same-singer pairs "
                             "(--distill-contrastive)")
        self.vocals, self.insts, self.batch, self.seed, self.steps = vocals, instrumentals, batch, seed, steps
        self.clean, self.stretch, self.vocal_stretch, self.layered = clean, stretch, vocal_stretch, layered
        self.seconds, self.vda_db, self.sr, self.augment, self.pairs = seconds, tuple(vda_db), sample_rate, augment, pairs
        self.weights = draw_weights(vocals, real, cloned)
        self.durations = {p: d for p, _, d in vocals}

    def __len__(self) -> int:
        return self.steps

    def plan(self, step: int) -> list[tuple[str, str, tuple | None]]:
        """[(vocal path, singer, vocal_segs)] of the batch."""
        if self.pairs is not None:
            return [(s.path, singer, s.vocal_segs) for singer, a, b in self.pairs.plan(step) for s in (a, b)]
        rng = np.random.default_rng([self.seed, step])
        idx = rng.choice(len(self.vocals), size=self.batch, p=self.weights)
        return [(self.vocals[i][0], self.vocals[i][1], None) for i in idx]

    def __getitem__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step, 1])
        plan = self.plan(step)
        items = [self.example(path, segs, rng) for path, _, segs in plan]
        out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("mixture", "vocal", "accompaniment")}
        out["vda"] = torch.tensor([it["vda"] for it in items], dtype=torch.float32)
        out["singers"] = [s for _, s, _ in plan]
        return out

    def _window(self, path: str, duration: float, rng, segs=None, seconds: float | None = None) -> np.ndarray:
        """A window of `path` (`seconds`, default the batch's) louder than SILENT_DBFS (a few redraws, then the
        loudest drawn; a digitally silent window, as separated stems have between phrases, is a quiet draw)."""
        best, seconds = None, seconds or self.seconds
        for _ in range(6):
            start = float(rng.choice(segs)) if segs else float(rng.uniform(0.0, max(0.0, duration - seconds)))
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

    def _stretched(self, path: str, duration: float, rng, factors: tuple[float, float] | None,
                   segs=None) -> np.ndarray:
        """A window of `path`; with `factors`, a window `f` times longer played `f` times faster (f drawn
        log-uniformly in the range): new keys and tempi of an instrumental, new pitch and formants of a voice."""
        if not factors:
            return self._window(path, duration, rng, segs)
        f = float(np.exp(rng.uniform(*np.log(factors))))
        n = int(round(self.seconds * self.sr))
        x = resample_by(self._window(path, duration, rng, segs, seconds=self.seconds * f), f)[:n]
        return np.pad(x, (0, n - len(x)))

    def _layer(self, a: np.ndarray, ipath: str, rng) -> np.ndarray:
        """`a` with a window of another instrumental (stretched as `a` is) added under it, its RMS 0–12 dB below
        `a`'s (drawn uniformly in dB)."""
        others = [i for i, (p, _) in enumerate(self.insts) if p != ipath] or list(range(len(self.insts)))
        bpath, bdur = self.insts[others[int(rng.integers(len(others)))]]
        b = self._stretched(bpath, bdur, rng, self.stretch).astype(np.float64)
        gain = 10 ** (-float(rng.uniform(0.0, 12.0)) / 20) * _rms(a) / max(_rms(b), 1e-12)
        return a + gain * b

    def example(self, path: str, segs, rng: np.random.Generator) -> dict:
        dur = self.durations.get(path) or audio_info(path).duration
        v = self._stretched(path, dur, rng, self.vocal_stretch, segs).astype(np.float64)
        ipath, idur = self.insts[int(rng.integers(len(self.insts)))]
        a = self._stretched(ipath, idur, rng, self.stretch).astype(np.float64)
        if self.layered > 0 and rng.random() < self.layered:  # no draw when off: earlier runs' batches unchanged
            a = self._layer(a, ipath, rng)
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
def units(model, wave: torch.Tensor, frames: bool = False) -> tuple[torch.Tensor, ...]:
    """wave [B, T] → (unit embeddings [B, U, D], the window's raw embedding [B, D] the projector reads). GE2E: its
    1.6-s partials (L2-normalised; the window embedding is their normalised mean); others: the window itself (U = 1).
    With `frames` (GE2E only), a third item: the top LSTM layer's output at every frame of every unit, [B, U, F, H]."""
    enc = model.encoder
    if hasattr(enc, "partials"):
        parts, *seq = enc.partials(model.frontend(wave), frames=True) if frames else (enc.partials(model.frontend(wave)),)
        return (parts, F.normalize(parts.mean(dim=1), dim=-1), *seq)
    if frames:
        raise ValueError("frame-level distillation (distill_frames) needs a GE2E encoder (--config voice)")
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


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, active: torch.Tensor, kind: str = "cosine",
                 gap_target: torch.Tensor | None = None, project=None) -> dict:
    """Student/teacher unit embeddings [B, U, D] and the active units [B, U] → {"distill_loss", "cosine"}.
    kind: cosine (1 − cos), mse (squared distance), or both (their sum), over the units with voice. With `gap_target`
    [D], the units without voice are taught that fixed vector (the teacher's mean voice: no instrumental-dependent
    direction left in a track's mean), with the same weight per unit. With `project` (the teacher's scoring backend as
    an affine map [..., D] → [..., d]), the voiced units' cosine is measured after it, in the space identification
    scores in; the units without voice stay in the embedding space (the mean voice sits near the backend's centre)."""
    if kind not in ("cosine", "mse", "both"):
        raise ValueError(f"distill loss must be cosine, mse or both, got {kind!r}")
    cos = (F.normalize(student, dim=-1) * F.normalize(teacher, dim=-1)).sum(-1)  # [B, U]
    w = active.float() / active.float().sum().clamp_min(1.0)
    target = teacher
    if gap_target is not None:
        target = torch.where(active[..., None], teacher, gap_target.expand_as(teacher))
        w = torch.full_like(w, 1.0 / w.numel())
    fit = (F.normalize(student, dim=-1) * F.normalize(target, dim=-1)).sum(-1)
    if project is not None:
        voiced = (F.normalize(project(student), dim=-1) * F.normalize(project(teacher), dim=-1)).sum(-1)
        fit = torch.where(active, voiced, fit)
    terms = {"cosine": 1 - fit, "mse": (student - target).square().sum(-1)}
    loss = sum(terms[k] for k in (("cosine", "mse") if kind == "both" else (kind,)))
    wa = active.float() / active.float().sum().clamp_min(1.0)
    return {"distill_loss": (loss * w).sum(), "cosine": (cos.detach() * wa).sum()}


def frame_loss(student: torch.Tensor, teacher: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The top LSTM layer's frame outputs [B, U, F, H] of the student (mixture) and the teacher (clean vocal), the
    voiced units [B, U] → mean 1 − cos over every frame of the voiced units: the student must carry its teacher's
    running state through the whole partial, not only land on its last frame's embedding (a FitNets-style hint; 160
    targets per unit instead of one)."""
    cos = F.cosine_similarity(student[active], teacher[active], dim=-1, eps=1e-6)  # [N, F]
    return (1 - cos).mean() if len(cos) else student.sum() * 0.0


def backend_map(backend, device="cpu"):
    """A scoring backend → its affine map on torch embeddings, [..., D] → [..., d] (centre, then transform)."""
    mean = torch.as_tensor(backend.mean, device=device)
    transform = torch.as_tensor(backend.transform, device=device)
    return lambda x: (x - mean) @ transform


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


class TeacherBank:
    """A FIFO of the frozen teacher's voiced clean-vocal units from earlier batches ([≤ size, D], L2-normalised): the
    other voices the student's neighbourhoods are compared over. The teacher never changes, so old entries stay
    exact (no momentum encoder needed). Not saved with the run: it refills within a few dozen steps."""

    MIN_FILL = 256  # the term waits until the bank holds this many units

    def __init__(self, size: int):
        self.size, self.units = size, None

    def __len__(self) -> int:
        return 0 if self.units is None else len(self.units)

    def push(self, units: torch.Tensor) -> None:
        u = F.normalize(units.detach(), dim=-1)
        self.units = u[-self.size:] if self.units is None else torch.cat([self.units, u])[-self.size:]


def neighbour_loss(student: torch.Tensor, teacher: torch.Tensor, bank: torch.Tensor, tau: float = NCE_TEMPERATURE):
    """Voiced student units [N, D] (mixtures), their teacher units [N, D] (clean vocals), a bank of other teacher
    units [M, D] → KL(teacher ‖ student) of the softmax similarities over the bank: the student's reading of a mixture
    must rank the other voices as the teacher's reading of the clean vocal ranks them (its nearest singers, its
    distances to them), not only pick out its own window. The relational distillation of CompRess/SEED, with a
    bank that needs no momentum encoder since the teacher is frozen."""
    s = F.normalize(student, dim=-1) @ bank.T / tau  # [N, M]
    t = F.normalize(teacher, dim=-1) @ bank.T / tau
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean")


def step_loss(student, teacher, batch: dict, cfg, gap_target: torch.Tensor | None = None, project=None,
              bank: TeacherBank | None = None) -> dict:
    """One batch → {"loss", "distill_loss", "cosine", ("frame_loss"), ("nce_loss"), ("neighbour_loss"),
    ("contrastive_loss")}; with `cfg.distill_frames` > 0, the top LSTM layer's frames of the voiced units (weight);
    `project`: the voiced units are compared after the teacher's scoring backend (`backend_map`), in the distillation
    and contrastive terms. With a `bank` (`cfg.distill_bank` > 0), the neighbourhood term over it (weight 1), then
    this batch's voiced teacher units join the bank."""
    hint = cfg.distill_frames > 0
    s_units, s_raw, *s_seq = units(student, batch["mixture"], frames=hint)
    with torch.no_grad():  # the clean vocal, or what `--distill-target separated` gives the teacher instead
        t_units, _, *t_seq = units(teacher, batch.get("teacher_input", batch["vocal"]), frames=hint)
    active = unit_activity(batch["vocal"], s_units.shape[1])
    res = distill_loss(s_units, t_units, active, cfg.distill_loss, gap_target, project)
    res["loss"] = res["distill_loss"]
    if hint:
        res["frame_loss"] = frame_loss(s_seq[0], t_seq[0], active)
        res["loss"] = res["loss"] + cfg.distill_frames * res["frame_loss"]
    # the units the relational terms compare, in the space asked (a batch of silent draws has none)
    s_cmp, t_cmp = (project(s_units), project(t_units)) if project else (s_units, t_units)
    if cfg.distill_nce > 0 and active.any():
        res["nce_loss"] = nce_loss(s_cmp, t_cmp, active)
        res["loss"] = res["loss"] + cfg.distill_nce * res["nce_loss"]
    if bank is not None and active.any():
        if len(bank) >= TeacherBank.MIN_FILL:
            b = F.normalize(project(bank.units), dim=-1) if project else bank.units
            res["neighbour_loss"] = neighbour_loss(s_cmp[active], t_cmp[active], b)
            res["loss"] = res["loss"] + res["neighbour_loss"]
        bank.push(t_units[active])
    if cfg.distill_contrastive > 0:
        c = nt_xent(student.projector(s_raw), cfg.temperature)
        res["contrastive_loss"] = c["contrastive_loss"]
        res["loss"] = res["loss"] + cfg.distill_contrastive * c["contrastive_loss"]
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
def identified(student, teacher, batch: dict) -> float:
    """Share of the batch's mixtures whose window embedding is closest to its own clean vocal's teacher embedding
    (among the batch's): does the student keep what tells the vocals apart?"""
    target = F.normalize(units(teacher, batch["vocal"])[1], dim=-1)
    s = F.normalize(units(student, batch["mixture"])[1], dim=-1)
    return float(((s @ target.T).argmax(1) == torch.arange(len(s), device=s.device)).float().mean())


@torch.no_grad()
def window_cosines(student, teacher, batch: dict) -> dict[str, float]:
    """Mean cosine of the window embeddings to the teacher's on the clean vocal: the student's and the teacher's own
    on the mixture (the no-distillation baseline)."""
    target = F.normalize(units(teacher, batch["vocal"])[1], dim=-1)
    s = F.normalize(units(student, batch["mixture"])[1], dim=-1)
    t = F.normalize(units(teacher, batch["mixture"])[1], dim=-1)
    return {"student": float((s * target).sum(-1).mean()), "teacher_on_mixture": float((t * target).sum(-1).mean())}
