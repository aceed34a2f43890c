"""A run folder's bookkeeping, shared by every training mode: checkpoints with their training state beside the
weights (optimiser tensors in safetensors, everything else in JSON), `latest.json`, `best/`, resuming, and log.csv."""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..models.checkpoint import load_weights, save_model, write_json_atomic

log = logging.getLogger(__name__)


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """state_dict → (flat tensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def train_state_writer(opt: torch.optim.Optimizer, sched, counters: dict):
    """→ {filename: writer(path)} for `save_model(files=...)`."""
    tensors, opt_meta = optimizer_to_files(opt)

    def write_tensors(p: Path) -> None:
        save_file(tensors, str(p))

    def write_json(p: Path) -> None:
        p.write_text(json.dumps({"optimizer": opt_meta, "scheduler": sched.state_dict(), **counters}, indent=2))

    return {"train_state.safetensors": write_tensors, "train_state.json": write_json}


def load_train_state(folder: str | os.PathLike, opt: torch.optim.Optimizer, sched) -> dict:
    folder = Path(folder)
    meta = json.loads((folder / "train_state.json").read_text())
    optimizer_from_files(opt, load_file(str(folder / "train_state.safetensors")), meta.pop("optimizer"))
    sched.load_state_dict(meta.pop("scheduler"))
    return meta


def resume_run(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> dict:
    """The run in `out` from its newest checkpoint: weights into `model`, optimiser and scheduler state → counters."""
    folder = out / json.loads((out / "latest.json").read_text())["checkpoint"]
    load_weights(model, folder / "model.safetensors")
    counters = load_train_state(folder, opt, sched)
    log.info("resumed from %s at step %d", folder, counters["step"])
    return counters


def save_checkpoint(out: Path, model, meta: dict, opt, sched, counters: dict, keep: int,
                    best: dict | None = None, files: dict | None = None) -> None:
    """OUT/checkpoints/step_N (weights, `files`, training state); with `best` (metadata to add), OUT/best too; then
    latest.json, and only the newest `keep` step checkpoints are kept."""
    name = f"checkpoints/step_{counters['step']:08d}"
    save_model(out / name, model, meta, {**(files or {}), **train_state_writer(opt, sched, counters)})
    if best is not None:
        save_model(out / "best", model, {**meta, "step": counters["step"], **best}, files)
    has_best = best is not None or (out / "best").exists()
    write_json_atomic(out / "latest.json", {"checkpoint": name, "step": counters["step"], "best": "best" if has_best else None})
    for old in sorted((out / "checkpoints").glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


class RunLog:
    """CSV (and optional TensorBoard) log of a run's `fields`; on resume, rows past the checkpoint are cut."""

    def __init__(self, out: Path, fields: list[str], resume_step: int | None, tensorboard: bool = False):
        self.path, self.fields = out / "log.csv", fields
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path) as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fields)
            w.writeheader()
            w.writerows(rows)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                log.warning("tensorboard not installed (pip install singerid[tensorboard]); CSV log only")

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.fields).writerow(row)
        if self.tb is not None:
            self.tb.add_scalar(f"{row['split']}/loss", row["loss"], row["step"])
            self.tb.add_scalar("lr", row["lr"], row["step"])
