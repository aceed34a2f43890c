"""The distillation run (`singerid train --mode distill`): settings, data, the loop with validation on held-out
instrumentals, and the self-describing student checkpoint. The batch and the losses are in `distill.py`."""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..cpu import single_thread_worker
from ..data.manifest import load_tracks
from ..data.pairs import PairBatches, build_sources
from ..models import save_model
from ..models.checkpoint import load_weights, write_json_atomic
from ..separation import load_separator
from .distill import (
    DistillBatches,
    TeacherBank,
    backend_map,
    cloned_files,
    distill_loss,
    identified,
    instrumental_files,
    load_teacher,
    mean_voice,
    more_vocal_files,
    split_instrumentals,
    step_loss,
    unit_activity,
    units,
    vocal_files,
    window_cosines,
)
from .recipe import (
    WeightAverage,
    fit_run_backend,
    instrumental_table,
    lr_scheduler,
    make_augmenter,
    param_groups,
    scheduler_step,
)
from .state import load_train_state, train_state_writer

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------- run
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
    vocals = more_vocal_files(cfg.distill_vocals, vocal_files(tracks))
    insts = instrumental_files(instrumental_table(cfg.instrumentals, tracks))
    train_i, val_i = split_instrumentals(insts, cfg.val_instrumentals, cfg.seed)
    total = cfg.max_epochs * cfg.epoch_steps
    pairs = None
    if cfg.distill_contrastive > 0:
        sources = build_sources(tracks[tracks["stem"] != "instrumental"], "vocal", clones=cfg.clones)
        pairs = PairBatches(sources, list(sources), "vocal", cfg.batch_pairs, cfg.seed, total, seconds=cfg.seconds,
                            sample_rate=sr)
    aug = make_augmenter(cfg, pd.DataFrame({"path": [p for p, _ in train_i]}))
    n = 2 * cfg.batch_pairs
    train_ds = DistillBatches(vocals, train_i, n, cfg.seed, total, cfg.seconds, cfg.vda, sr, aug, pairs,
                              clean=cfg.distill_clean, stretch=cfg.distill_stretch,
                              vocal_stretch=cfg.distill_vocal_stretch, layered=cfg.distill_layered,
                              real=cfg.distill_real, cloned=cloned_files(tracks))
    val_ds = DistillBatches(vocals, val_i, n, cfg.seed + 1_000_003, cfg.val_steps, cfg.seconds, cfg.vda, sr)
    info = {"vocal_stems": len(vocals), "vocal_hours": round(sum(d for _, _, d in vocals) / 3600, 2),
            "instrumentals_train": [p for p, _ in train_i],
            "instrumentals_val": [p for p, _ in val_i] if cfg.val_instrumentals > 0 else []}
    log.info("distillation: %d vocal stems, %d training instrumentals, %s", len(vocals), len(train_i),
             f"{len(val_i)} held out for validation" if cfg.val_instrumentals > 0 else "validation on the same instrumentals")
    return train_ds, val_ds, info


@torch.no_grad()
def validate(student, teacher, val_ds: DistillBatches, cfg, device) -> dict[str, float]:
    """Mean over the fixed validation batches: distillation loss, and the window cosines of `window_cosines`."""
    student.eval()
    rows = []
    for i in range(len(val_ds)):
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in val_ds[i].items()}
        s_units, _ = units(student, b["mixture"])
        t_units, _ = units(teacher, b["vocal"])
        loss = distill_loss(s_units, t_units, unit_activity(b["vocal"], s_units.shape[1]), cfg.distill_loss)
        rows.append({"loss": float(loss["distill_loss"]), **window_cosines(student, teacher, b),
                     "identified": identified(student, teacher, b)})
    student.train()
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _log(path: Path, **row) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def add_prenet(student, channels: int) -> None:
    """Give a GE2E student a `MelGate` of `channels` in front of its LSTM (the identity at first: the student still
    starts as its teacher), recorded in its model config so that the checkpoint rebuilds it."""
    from ..models.ge2e import MelGate

    enc = student.encoder
    if not hasattr(enc, "prenet"):
        raise ValueError("--distill-prenet: only a GE2E (voice) student has a mel front end to gate")
    if enc.prenet is not None:
        raise ValueError("--distill-prenet: the teacher already has a pre-net; its student inherits it")
    enc.prenet = MelGate(channels).to(next(enc.parameters()).device)
    student.cfg.encoder = {**student.cfg.encoder, "prenet": channels}


def widen_input(student, input: str = "mel", fine: int = 0) -> None:
    """Let a GE2E student see more than its teacher's 40-band mel: its LSTM reads the 201-bin STFT power the mel is
    made from (`--distill-input stft`; the first layer's input weights mapped through the filterbank) and/or, beside
    it, a longer-window STFT that resolves harmonics (`--distill-fine N`; zero-initialised weights). Either way it
    still starts exactly as its teacher; recorded in its model config."""
    from ..models.ge2e import GE2EEncoder, input_state

    enc = student.encoder
    if not isinstance(enc, GE2EEncoder):
        raise ValueError("--distill-input/--distill-fine: only a GE2E (voice) student has a mel front end to widen")
    if enc.prenet is not None and input != "mel":
        raise ValueError("--distill-input stft: the student has a mel gate (--distill-prenet); use one or the other")
    if enc.fine and fine and enc.fine != fine:
        raise ValueError(f"--distill-fine {fine}: the teacher already has a fine view of {enc.fine}")
    input, fine = ("stft" if enc.input == "stft" else input), fine or enc.fine  # what the teacher has, kept
    encoder_cfg = {**student.cfg.encoder, "input": input, **({"fine": fine} if fine else {})}
    wide = GE2EEncoder(**encoder_cfg).to(next(enc.parameters()).device)
    wide.load_state_dict(input_state(enc.state_dict(), input, fine))
    student.encoder, student.cfg.encoder = wide, encoder_cfg


def distill(cfg) -> Path:
    """Run (or resume) a distillation run; returns the run folder (usable as `--checkpoint`)."""
    from .loop import _model_config

    cfg = resolve(cfg)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "latest.json").exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    teacher, tdesc, backend = load_teacher(cfg.teacher, device)
    if cfg.distill_space not in ("embedding", "backend"):
        raise ValueError(f"--distill-space must be embedding or backend, got {cfg.distill_space!r}")
    if cfg.distill_space == "backend" and backend is None:
        raise ValueError(f"--distill-space backend: the teacher {cfg.teacher} has no scoring backend (fit one with "
                         "`singerid fit-scoring`, or train the teacher with --scoring wccn)")
    project = backend_map(backend, device) if cfg.distill_space == "backend" else None
    if cfg.distill_target not in ("clean", "separated"):
        raise ValueError(f"--distill-target must be clean or separated, got {cfg.distill_target!r}")
    separator = load_separator("spleeter", device) if cfg.distill_target == "separated" else None
    arch = _model_config(cfg.model).architecture
    if arch != teacher.cfg.architecture:
        raise ValueError(f"--config {cfg.model} is a {arch} model but the teacher is {teacher.cfg.architecture}: "
                         f"the student starts from the teacher's weights, so give the teacher's preset")
    torch.manual_seed(cfg.seed)
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    if cfg.distill_input not in ("mel", "stft"):
        raise ValueError(f"--distill-input must be mel or stft, got {cfg.distill_input!r}")
    if cfg.distill_input == "stft" or cfg.distill_fine:
        widen_input(student, cfg.distill_input, cfg.distill_fine)
    if cfg.distill_prenet:
        add_prenet(student, cfg.distill_prenet)
    tracks = load_tracks(cfg.manifest)
    train_ds, val_ds, data_info = _datasets(cfg, tracks, student.sample_rate)
    opt = torch.optim.Adam(param_groups(student, cfg), lr=cfg.lr)
    total = min(len(train_ds), cfg.max_steps if cfg.max_steps is not None else len(train_ds))
    sched = lr_scheduler(opt, cfg, total, mode="max")
    counters = {"step": 0, "epoch": 0, "best_val": -1.0, "bad_epochs": 0}
    avg = WeightAverage(student, cfg.ema) if cfg.ema else None
    if cfg.resume and (out / "latest.json").exists():
        folder = out / json.loads((out / "latest.json").read_text())["checkpoint"]
        load_weights(student, folder / "model.safetensors")
        avg = WeightAverage.resume(student, folder, cfg.ema) if cfg.ema else None
        counters.update(load_train_state(folder, opt, sched))
        log.info("resumed from %s at step %d", folder, counters["step"])
    averaged = (lambda: avg.applied(student)) if avg else contextlib.nullcontext  # what is validated and saved
    meta = {"training": {**dataclasses.asdict(cfg), **data_info},
            "frontend": {"sample_rate": student.sample_rate, "window_seconds": 6.0, "peak_normalise": True},
            "input": "mixture", **({"embedding_space": tdesc["embedding_space"]} if cfg.scoring == "teacher" else {}),
            "distilled": {**tdesc, "vda_db": list(cfg.vda), "loss": cfg.distill_loss, "nce_weight": cfg.distill_nce,
                          "gaps": cfg.distill_gaps, "contrastive_weight": cfg.distill_contrastive,
                          "clean_share": cfg.distill_clean, "stretch": cfg.distill_stretch,
                          "layered": cfg.distill_layered, "real": cfg.distill_real, "target": cfg.distill_target,
                          "vocal_stretch": cfg.distill_vocal_stretch, "more_vocals": cfg.distill_vocals,
                          "bank": cfg.distill_bank, "frames_weight": cfg.distill_frames, "input": cfg.distill_input,
                          "fine": cfg.distill_fine,
                          "space": cfg.distill_space, "ema": cfg.ema}}

    def save(folder: Path, extra: dict, resumable: dict | None) -> None:
        """`resumable`: files to keep beside the training state (None: the model only, e.g. `best`)."""
        files = {**train_state_writer(opt, sched, counters), **resumable} if resumable is not None else {}
        if backend is not None and cfg.scoring == "teacher":
            files["backend.safetensors"] = lambda p: backend.save(p.parent)  # the teacher's: same space
        save_model(folder, student, {**meta, **extra}, files)

    def checkpoint(best: bool) -> None:
        name = f"checkpoints/step_{counters['step']:08d}"
        live = avg.live_writer(student) if avg else {}
        with averaged():
            save(out / name, {}, live)
            if best:
                save(out / "best", {"step": counters["step"], "val_score": counters["best_val"]}, None)
        has_best = best or (out / "best").exists()
        write_json_atomic(out / "latest.json", {"checkpoint": name, "step": counters["step"], "best": "best" if has_best else None})
        for old in sorted((out / "checkpoints").glob("step_*"))[: -cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    gap_target = mean_voice(teacher, val_ds, device) if cfg.distill_gaps == "mean" else None
    bank = TeacherBank(cfg.distill_bank) if cfg.distill_bank > 0 else None
    step, t0 = counters["step"], time.time()
    if step == 0:
        v = validate(student, teacher, val_ds, cfg, device)  # the teacher's weights: live and average agree
        _log(out / "log.csv", step=0, epoch=0, split="val", loss=v["loss"], cosine=v["student"],
             teacher_cosine=v["teacher_on_mixture"], identified=v["identified"], lr=opt.param_groups[-1]["lr"], seconds=0.0)
        log.info("before distillation: validation cosine to the teacher %.4f", v["student"])
    loader = DataLoader(train_ds, batch_size=None, sampler=range(step, total), num_workers=cfg.num_workers,
                        prefetch_factor=2 if cfg.num_workers else None,
                        worker_init_fn=single_thread_worker if cfg.num_workers else None)
    bar = tqdm(total=total, initial=step, desc="distill", unit="step", disable=None)
    stopped = counters["bad_epochs"] >= cfg.stop_patience
    for batch in loader if step < total and not stopped else []:
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if separator is not None:  # the teacher reads what the separation pipeline would give it
            b["teacher_input"] = torch.from_numpy(separator.vocals_batch(batch["mixture"].numpy())).to(device)
        res = step_loss(student, teacher, b, cfg, gap_target, project, bank)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        opt.step()
        if avg:
            avg.update()
        scheduler_step(sched)
        step = counters["step"] = step + 1
        lr = opt.param_groups[-1]["lr"]
        bar.update(1)
        bar.set_postfix(loss=f"{float(res['loss'].detach()):.4f}", cos=f"{float(res['cosine']):.3f}")
        _log(out / "log.csv", step=step, epoch=counters["epoch"], split="train", loss=float(res["loss"].detach()),
             cosine=float(res["cosine"]), teacher_cosine="", lr=lr, seconds=round(time.time() - t0, 2))
        if step % cfg.epoch_steps == 0 or step == total:
            with averaged():
                v = validate(student, teacher, val_ds, cfg, device)
            score = v["student"] + v["identified"]  # closeness to the teacher and what tells vocals apart
            scheduler_step(sched, score)
            counters["epoch"] += 1
            improved = score > counters["best_val"]
            counters["best_val"] = max(counters["best_val"], score)
            counters["bad_epochs"] = 0 if improved else counters["bad_epochs"] + 1
            _log(out / "log.csv", step=step, epoch=counters["epoch"], split="val", loss=v["loss"], cosine=v["student"],
                 teacher_cosine=v["teacher_on_mixture"], identified=v["identified"], lr=lr,
                 seconds=round(time.time() - t0, 2))
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
