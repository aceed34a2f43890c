"""The distillation run (`singerid train --mode distill`): settings, data, the loop with validation on held-out
instrumentals, and the self-describing student checkpoint. The batch and the losses are in `distill.py`."""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..cpu import single_thread_worker
from ..data.manifest import load_tracks
from ..models.factory import load_config
from .distill import (
    DistillBatches,
    distill_loss,
    instrumental_files,
    load_teacher,
    mean_voice,
    split_instrumentals,
    step_loss,
    unit_activity,
    units,
    vocal_files,
    window_scores,
)
from .recipe import fit_run_backend, instrumental_table, lr_scheduler, make_augmenter, param_groups, scheduler_step
from .state import RunLog, resume_run, save_checkpoint

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "split", "loss", "cosine", "teacher_cosine", "identified", "lr", "seconds"]


def resolve(cfg):
    """Distillation's settings: the preset's train section, except that nothing is frozen unless asked (the LSTM
    must learn to ignore the accompaniment) and `remix` is left out of the preset's augmentations (mixing is the
    point of every example already). Scoring: `teacher` (default) carries the teacher's backend (one space: the
    teacher's catalogues answer the student); a kind (wccn…) refits it on the student's own views of the table and of
    its remixes, unseparated (a space of its own); `none`, no backend."""
    asked_aug = cfg.augment
    cfg = dataclasses.replace(cfg, freeze=() if cfg.freeze is None else cfg.freeze, scoring=cfg.scoring or "teacher")
    cfg = cfg.resolved()
    if asked_aug is None:
        cfg = dataclasses.replace(cfg, augment=tuple(a for a in cfg.augment if a != "remix"))
    if not cfg.teacher:
        raise ValueError("--mode distill needs --teacher (a trained run, or a pretrained preset such as voice)")
    return cfg


def _datasets(cfg, tracks: pd.DataFrame, sr: int) -> tuple[DistillBatches, DistillBatches, dict]:
    vocals = vocal_files(tracks)
    insts = instrumental_files(instrumental_table(cfg.instrumentals, tracks))
    train_i, val_i = split_instrumentals(insts, cfg.val_instrumentals, cfg.seed)
    aug = make_augmenter(cfg, pd.DataFrame({"path": [p for p, _ in train_i]}))
    n = 2 * cfg.batch_pairs
    train_ds = DistillBatches(vocals, train_i, n, cfg.seed, cfg.max_epochs * cfg.epoch_steps, cfg.seconds, cfg.vda,
                              sr, aug, clean=cfg.distill_clean, stretch=cfg.distill_stretch)
    val_ds = DistillBatches(vocals, val_i, n, cfg.seed + 1_000_003, cfg.val_steps, cfg.seconds, cfg.vda, sr)
    info = {"vocal_stems": len(vocals), "vocal_hours": round(sum(d for _, d in vocals) / 3600, 2),
            "instrumentals_train": [p for p, _ in train_i],
            "instrumentals_val": [p for p, _ in val_i] if cfg.val_instrumentals > 0 else []}
    log.info("distillation: %d vocal stems, %d training instrumentals, %s", len(vocals), len(train_i),
             f"{len(val_i)} held out for validation" if cfg.val_instrumentals > 0 else "validation on the same instrumentals")
    return train_ds, val_ds, info


@torch.no_grad()
def validate(student, teacher, val_ds: DistillBatches, device) -> dict[str, float]:
    """Mean over the fixed validation batches: distillation loss, and `window_scores`."""
    student.eval()
    rows = []
    for i in range(len(val_ds)):
        b = {k: v.to(device) for k, v in val_ds[i].items()}
        s_units, _ = units(student, b["mixture"])
        t_units, _ = units(teacher, b["vocal"])
        loss = distill_loss(s_units, t_units, unit_activity(b["vocal"], s_units.shape[1]))
        rows.append({"loss": float(loss["distill_loss"]), **window_scores(student, teacher, b)})
    student.train()
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _log_val(runlog: RunLog, v: dict, step: int, epoch: int, lr: float, seconds: float) -> None:
    runlog.write(step=step, epoch=epoch, split="val", loss=v["loss"], cosine=v["student"],
                 teacher_cosine=v["teacher_on_mixture"], identified=v["identified"], lr=lr, seconds=round(seconds, 2))


def distill(cfg) -> Path:
    """Run (or resume) a distillation run; returns the run folder (usable as `--checkpoint`)."""
    cfg = resolve(cfg)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "latest.json").exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    teacher, tdesc, backend = load_teacher(cfg.teacher, device)
    arch = load_config(cfg.model).architecture
    if arch != teacher.cfg.architecture:
        raise ValueError(f"--config {cfg.model} is a {arch} model but the teacher is {teacher.cfg.architecture}: "
                         f"the student starts from the teacher's weights, so give the teacher's preset")
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    tracks = load_tracks(cfg.manifest)
    train_ds, val_ds, data_info = _datasets(cfg, tracks, student.sample_rate)
    opt = torch.optim.Adam(param_groups(student, cfg), lr=cfg.lr)
    total = min(len(train_ds), cfg.max_steps if cfg.max_steps is not None else len(train_ds))
    sched = lr_scheduler(opt, cfg, total, mode="max")
    counters = {"step": 0, "epoch": 0, "best_val": -1.0, "bad_epochs": 0}
    if cfg.resume and (out / "latest.json").exists():
        counters.update(resume_run(out, student, opt, sched))
    runlog = RunLog(out, LOG_FIELDS, counters["step"] if cfg.resume else None)
    meta = {"training": {**dataclasses.asdict(cfg), **data_info},
            "frontend": {"sample_rate": student.sample_rate, "window_seconds": 6.0, "peak_normalise": True},
            "input": "mixture", **({"embedding_space": tdesc["embedding_space"]} if cfg.scoring == "teacher" else {}),
            "distilled": {**tdesc, "vda_db": list(cfg.vda), "loss": "cosine", "nce_weight": cfg.distill_nce,
                          "gaps": "mean", "clean_share": cfg.distill_clean, "stretch": cfg.distill_stretch}}

    files = {}
    if backend is not None and cfg.scoring == "teacher":
        files["backend.safetensors"] = lambda p: backend.save(p.parent)  # the teacher's: same space

    def checkpoint(best: bool) -> None:
        save_checkpoint(out, student, meta, opt, sched, counters, cfg.keep_checkpoints,
                        {"val_score": counters["best_val"]} if best else None, files)

    gap_target = mean_voice(teacher, val_ds, device)
    step, t0 = counters["step"], time.time()
    if step == 0:
        v = validate(student, teacher, val_ds, device)
        _log_val(runlog, v, 0, 0, opt.param_groups[-1]["lr"], 0.0)
        log.info("before distillation: validation cosine to the teacher %.4f", v["student"])
    loader = DataLoader(train_ds, batch_size=None, sampler=range(step, total), num_workers=cfg.num_workers,
                        prefetch_factor=2 if cfg.num_workers else None,
                        worker_init_fn=single_thread_worker if cfg.num_workers else None)
    bar = tqdm(total=total, initial=step, desc="distill", unit="step", disable=None)
    stopped = counters["bad_epochs"] >= cfg.stop_patience
    for batch in loader if step < total and not stopped else []:
        res = step_loss(student, teacher, {k: v.to(device) for k, v in batch.items()}, cfg.distill_nce, gap_target)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        opt.step()
        scheduler_step(sched)
        step = counters["step"] = step + 1
        lr = opt.param_groups[-1]["lr"]
        bar.update(1)
        bar.set_postfix(loss=f"{float(res['loss'].detach()):.4f}", cos=f"{float(res['cosine']):.3f}")
        runlog.write(step=step, epoch=counters["epoch"], split="train", loss=float(res["loss"].detach()),
                     cosine=float(res["cosine"]), teacher_cosine="", lr=lr, seconds=round(time.time() - t0, 2))
        if step % cfg.epoch_steps == 0 or step == total:
            v = validate(student, teacher, val_ds, device)
            score = v["student"] + v["identified"]  # closeness to the teacher and what tells vocals apart
            scheduler_step(sched, score)
            counters["epoch"] += 1
            improved = score > counters["best_val"]
            counters["best_val"] = max(counters["best_val"], score)
            counters["bad_epochs"] = 0 if improved else counters["bad_epochs"] + 1
            _log_val(runlog, v, step, counters["epoch"], lr, time.time() - t0)
            log.info("epoch %d (step %d): validation cosine to the teacher %.4f (teacher on the mixture %.4f), "
                     "own vocal nearest %.3f", counters["epoch"], step, v["student"], v["teacher_on_mixture"],
                     v["identified"])
            checkpoint(improved)
            stopped = counters["bad_epochs"] >= cfg.stop_patience
        if stopped or step >= total:
            break
    bar.close()
    if not (out / "latest.json").exists():
        checkpoint(True)
    if cfg.scoring not in ("teacher", "none"):
        fit_run_backend(out, tracks, cfg)
    return out
