"""Singer-level contrastive training (paper §3.2): one GPU, CPU, or many GPUs under `torchrun` (DDP).

One epoch = `epoch_steps` training iterations + `val_steps` iterations on fixed validation pairs; ReduceLROnPlateau on
the validation loss; early stop after `stop_patience` epochs without improvement. Checkpoints are self-describing
folders under OUT/checkpoints, `OUT/latest.json` points at the newest, OUT/best holds the best validation loss.
`resume=True` continues from the newest checkpoint exactly (batches are a function of (seed, step)).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..cpu import single_thread_worker
from ..data.manifest import load_tracks
from ..data.pairs import PairBatches, build_sources, split_singers
from ..losses import nt_xent
from ..models import create_model
from ..models.factory import load_config
from . import dist
from .recipe import fit_run_backend, instrumental_table, lr_scheduler, make_augmenter, param_groups, scheduler_step
from .state import RunLog, resume_run, save_checkpoint

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "split", "loss", "pair_accuracy", "lr", "seconds"]


@dataclass
class TrainConfig:
    manifest: str
    out: str
    mode: str = "vocal"
    model: str = "tiny"  # preset name (list_models()) or a JSON config file
    resume: bool = False
    max_steps: int | None = None
    seed: int = 0
    batch_pairs: int | None = None  # None: the preset's train section (paper: 128)
    lr: float | None = None
    temperature: float | None = None
    epoch_steps: int | None = None
    val_steps: int | None = None
    plateau_patience: int | None = None
    plateau_factor: float | None = None
    lr_schedule: str | None = None  # plateau (per epoch, on the validation score) | cosine (annealed to 0 per step)
    stop_patience: int | None = None
    max_epochs: int | None = None
    val_fraction: float = 0.1
    num_workers: int = 2
    device: str | None = None  # None: cuda when available
    ckpt_every: int | None = None  # extra checkpoints every N steps (always at each epoch end)
    keep_checkpoints: int = 2
    tensorboard: bool = False
    separate: str = "none"  # vocal/hybrid modes: separate mixtures that have no vocals_path (cached on disk)
    mix_instrumentals: bool = False  # mixture/hybrid modes: mix vocal stems onto the table's instrumentals on the fly
    # None below: the preset's train section, else the paper's setting
    clones: bool | None = None  # kind=cloned rows as positives of the singer they imitate (paper: off)
    augment: tuple[str, ...] | None = None  # augmentation names (singerid.augment), () for none (paper: none)
    augment_prob: float | None = None
    instrumentals: str | tuple[str, ...] | None = None  # tables / folders of instrumentals (default: the table's)
    freeze: tuple[str, ...] | None = None  # fnmatch patterns of parameter names kept frozen, e.g. "encoder.lstm.*_l0"
    encoder_lr: float | None = None  # learning rate of encoder.* parameters (default: lr)
    scoring: str | None = None  # backend fitted on the training table at the end: wccn | lda | center | none (| teacher)
    asnorm_k: int = 10  # the scoring backend's AS-norm: top-k cohort scores (0: cosine scores)
    seconds: float | None = None  # length of a training view (default 6 s, the paper's segment)
    # mode "distill" (train/distill.py): a mixture-reading student taught by a frozen teacher's clean-vocal embeddings
    teacher: str | None = None  # a trained run / checkpoint, or a pretrained preset (voice)
    vda: tuple[float, float] = (-6.0, 12.0)  # vocal-to-accompaniment ratio range of the mixtures, dB
    distill_nce: float = 1.0  # weight of the contrastive distillation term (own teacher unit vs the batch's others)
    distill_clean: float = 0.2  # share of training examples with no accompaniment (the clean vocal itself)
    distill_stretch: tuple[float, float] | None = None  # instrumentals resampled by a factor in this range (None: off)
    val_instrumentals: int = 0  # instrumentals held out for the validation cosine (0: validate on the training ones)

    def resolved(self) -> "TrainConfig":
        """Fill the None training settings from the model preset, then the paper's defaults."""
        preset = load_config(self.model).train
        fills = {k: preset[k] for k in preset if getattr(self, k, 0) is None}
        cfg = dataclasses.replace(self, **fills)
        paper = {"clones": False, "augment": (), "augment_prob": 0.5, "freeze": (), "scoring": "none", "seconds": 6.0,
                 "lr_schedule": "plateau"}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in paper.items() if getattr(cfg, k) is None})
        return dataclasses.replace(cfg, augment=tuple(cfg.augment), freeze=tuple(cfg.freeze))


def _loader(ds: PairBatches, start: int, workers: int) -> DataLoader:
    return DataLoader(
        ds, batch_size=None, sampler=range(start, len(ds)), num_workers=workers,
        persistent_workers=False, prefetch_factor=2 if workers else None,
        worker_init_fn=single_thread_worker if workers else None,
    )


def _step_loss(model, waves: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
    z = model(waves)  # [2b, P]
    return nt_xent(dist.gather_with_grad(z), temperature)


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) a training run; returns the run folder (usable as `--checkpoint`)."""
    if cfg.scoring == "teacher" and cfg.mode != "distill":
        raise ValueError("--scoring teacher is for --mode distill (a student carrying its teacher's backend)")
    if cfg.mode == "distill":
        from .distill_run import distill

        return distill(cfg)
    cfg = cfg.resolved()
    ctx = dist.setup(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tracks = load_tracks(cfg.manifest)
    if cfg.separate != "none" and cfg.mode in ("vocal", "hybrid"):
        from ..separation import ensure_vocal_stems, load_separator
        from ..weights import home

        sep = load_separator(cfg.separate, str(ctx.device), home() / "separated")
        tracks = ensure_vocal_stems(tracks, sep, home() / "stems" / sep.name) if ctx.is_main else tracks
        dist.barrier(ctx)
        if not ctx.is_main:
            tracks = ensure_vocal_stems(tracks, sep, home() / "stems" / sep.name)  # all cached by rank 0 now
    insts = instrumental_table(cfg.instrumentals, tracks)
    sources = build_sources(pd.concat([tracks[tracks["stem"] != "instrumental"], insts]), cfg.mode,
                            cfg.mix_instrumentals, cfg.clones)
    train_s, val_s = split_singers(list(sources), tracks, cfg.val_fraction, cfg.seed)
    log.info("%s mode: %d training singers, %d validation singers", cfg.mode, len(train_s), len(val_s))
    mcfg = load_config(cfg.model)
    model = create_model(mcfg, seed=cfg.seed).to(ctx.device)
    sr = model.sample_rate
    total_steps = cfg.max_epochs * cfg.epoch_steps
    train_ds = PairBatches(sources, train_s, cfg.mode, cfg.batch_pairs, cfg.seed, total_steps, ctx.rank, ctx.world,
                           cfg.seconds, sr, augment=make_augmenter(cfg, insts))
    val_ds = PairBatches(sources, val_s, cfg.mode, cfg.batch_pairs, cfg.seed + 1_000_003, cfg.val_steps, ctx.rank,
                         ctx.world, cfg.seconds, sr)
    opt = torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr)
    stop_at = min(total_steps, cfg.max_steps if cfg.max_steps is not None else total_steps)
    sched = lr_scheduler(opt, cfg, stop_at)
    counters = {"step": 0, "epoch": 0, "best_val": float("inf"), "bad_epochs": 0}
    if cfg.resume and (out / "latest.json").exists():
        counters.update(resume_run(out, model, opt, sched))
    elif (out / "latest.json").exists() and ctx.is_main:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    runlog = RunLog(out, LOG_FIELDS, counters["step"] if cfg.resume else None, cfg.tensorboard) if ctx.is_main else None
    ddp_model = dist.wrap(model, ctx)
    meta = {"training": {**dataclasses.asdict(cfg), "singers_train": len(train_s), "singers_val": len(val_s)},
            "frontend": {"sample_rate": sr, "window_seconds": 6.0, "peak_normalise": True}}

    def checkpoint(best: bool = False) -> None:
        if ctx.is_main:
            save_checkpoint(out, model, meta, opt, sched, counters, cfg.keep_checkpoints,
                            {"val_loss": counters["best_val"]} if best else None)

    step = counters["step"]
    bar = tqdm(total=stop_at, initial=step, desc=f"train {cfg.mode}", disable=None if ctx.is_main else True, unit="step")
    t0, saved_at = time.time(), step
    stopped = counters["bad_epochs"] >= cfg.stop_patience
    for waves, _ in _loader(train_ds, step, cfg.num_workers) if step < stop_at and not stopped else []:
        ddp_model.train()
        res = _step_loss(ddp_model, waves.to(ctx.device, non_blocking=True), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        res["contrastive_loss"].backward()
        opt.step()
        scheduler_step(sched)
        step = counters["step"] = step + 1
        lr = opt.param_groups[0]["lr"]
        loss = float(res["contrastive_loss"].detach())
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}")
        if runlog:
            runlog.write(step=step, epoch=counters["epoch"], split="train", loss=loss,
                         pair_accuracy=float(res["pair_accuracy"]), lr=lr, seconds=round(time.time() - t0, 2))
        if step % cfg.epoch_steps == 0:
            v = validate(ddp_model, val_ds, cfg.temperature, ctx.device)
            stopped = _end_epoch(v, cfg, opt, sched, counters, runlog, checkpoint, t0)
            saved_at = step
        elif cfg.ckpt_every and step % cfg.ckpt_every == 0:
            checkpoint()
            saved_at = step
        if stopped or step >= stop_at:
            break
    bar.close()
    if saved_at != step or not (out / "latest.json").exists():
        checkpoint()
    if ctx.is_main and cfg.scoring != "none":
        fit_run_backend(out, tracks, cfg)
    dist.barrier(ctx)
    dist.cleanup(ctx)
    return out


@torch.no_grad()
def validate(model, val_ds: PairBatches, temperature: float, device) -> dict[str, float]:
    model.eval()
    losses, accs = [], []
    for i in range(len(val_ds)):
        waves, _ = val_ds[i]
        res = _step_loss(model, waves.to(device), temperature)
        losses.append(float(res["contrastive_loss"]))
        accs.append(float(res["pair_accuracy"]))
    return {"loss": sum(losses) / len(losses), "pair_accuracy": sum(accs) / len(accs)}


def _end_epoch(v: dict, cfg, opt, sched, counters, runlog, checkpoint, t0) -> bool:
    """After validation (`v`): step the scheduler, checkpoint; → True when training should stop."""
    scheduler_step(sched, v["loss"])
    counters["epoch"] += 1
    improved = v["loss"] < counters["best_val"]
    if improved:
        counters["best_val"], counters["bad_epochs"] = v["loss"], 0
    else:
        counters["bad_epochs"] += 1
    if runlog:
        runlog.write(step=counters["step"], epoch=counters["epoch"], split="val", loss=v["loss"],
                     pair_accuracy=v["pair_accuracy"], lr=opt.param_groups[0]["lr"], seconds=round(time.time() - t0, 2))
    log.info("epoch %d: val loss %.4f (best %.4f), pair acc %.3f", counters["epoch"], v["loss"], counters["best_val"], v["pair_accuracy"])
    checkpoint(best=improved)
    return counters["bad_epochs"] >= cfg.stop_patience or counters["epoch"] >= cfg.max_epochs
