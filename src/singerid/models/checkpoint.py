"""Self-describing checkpoints: a folder with model.safetensors + config.json, written atomically.

Loading reads JSON and tensors only (never unpickles code) and checks every weight against the architecture.
A training run's `--out` folder holds `latest.json` pointing at its newest checkpoint folder and `best/`; `load_model`
accepts the run folder (→ best validation loss, else newest), a checkpoint folder, or the .safetensors file itself.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .factory import ModelConfig, SingerModel

FORMAT = "singerid-checkpoint"
VERSION = 1


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_model(folder: Path, model: SingerModel, extra: dict | None = None, files: dict | None = None) -> Path:
    """Write `folder` atomically (tmp folder + rename): model.safetensors, config.json and any `files`
    ({name: callable(path)}) written inside the same tmp folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp"))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    meta = {"format": FORMAT, "version": VERSION, "model": model.cfg.to_dict(), **(extra or {})}
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    for name, writer in (files or {}).items():
        writer(tmp / name)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Run folder (its best-validation checkpoint, else its newest) | checkpoint folder | model.safetensors → folder."""
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        return p.parent
    if (p / "latest.json").is_file():
        latest = json.loads((p / "latest.json").read_text())
        best = p / "best"
        return best if latest.get("best") and (best / "model.safetensors").is_file() else p / latest["checkpoint"]
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return p
    raise FileNotFoundError(f"{p}: no singerid checkpoint (expected latest.json or config.json + model.safetensors)")


def read_config(path: str | os.PathLike) -> dict:
    folder = resolve_checkpoint(path)
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: not a {FORMAT} (format={meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise ValueError(f"{folder}: checkpoint version {meta['version']} is newer than this singerid ({VERSION})")
    return meta


def load_weights(module: nn.Module, file: Path) -> None:
    state = load_file(str(file))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{file}: weights do not match the architecture (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_model(path: str | os.PathLike, device: str = "cpu") -> SingerModel:
    """Rebuild the model named in config.json and load its weights, validated."""
    folder = resolve_checkpoint(path)
    meta = read_config(folder)
    model = SingerModel(ModelConfig.from_dict(meta["model"]))
    load_weights(model, folder / "model.safetensors")
    return model.to(device).eval()
