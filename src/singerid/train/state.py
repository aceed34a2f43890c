"""Training state beside the model weights: optimiser tensors in safetensors, everything else in JSON."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


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
