"""Self-describing checkpoints: a folder with model.safetensors + config.json, written atomically.

Loading reads JSON and tensors only (never unpickles code) and checks every weight against the architecture.
A training run's `--out` folder holds `latest.json` pointing at its newest checkpoint folder and `best/`; `load_model`
accepts the run folder (→ best validation loss, else newest), a checkpoint folder, or the .safetensors file itself.
`average_checkpoints` writes the mean of several runs of one recipe as a checkpoint of its own (a model soup).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .factory import ModelConfig, SingerModel

FORMAT = "singerid-checkpoint"
VERSION = 1

log = logging.getLogger(__name__)


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


def average_checkpoints(paths: list, out: str | os.PathLike, weights: list[float] | None = None) -> Path:
    """A model soup: the weighted mean of the weights of several checkpoints of one architecture, written as a
    checkpoint of its own (`average` in its config.json names the ingredients).

    Meant for runs that start from one point and train towards one target, e.g. one distillation recipe run with
    several seeds: they sit in one basin, so their mean scores like a single model (same cost at inference) but does
    not carry one seed's luck. A student averaged with its own teacher (e.g. weights 0.7, 0.3) moves part of the way
    back to the teacher (weight-space ensembling of a fine-tune with its starting point, WiSE-FT): it still reads
    mixtures, in the teacher's space. Refused: different architectures, integer buffers that differ, embedding spaces
    that differ where one is declared (students of different teachers), inputs that differ outside one space. The
    scoring backend is kept when every ingredient carries the same one (a distilled student carries its teacher's);
    otherwise the soup has none (refit it: `singerid fit-scoring --checkpoint OUT`).
    """
    from .backend import ScoringBackend
    from .identity import embedding_space

    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per checkpoint ({len(paths)}), not all zero; got {weights}")
    folders = [resolve_checkpoint(p) for p in paths]
    metas = [read_config(f) for f in folders]
    arch = [{k: v for k, v in m["model"].items() if k not in ("train", "description")} for m in metas]
    spaces = [embedding_space(f) for f in folders]  # declared (a student: its teacher's), else its weights'
    shared = len(set(spaces)) == 1  # a teacher and its students, or students of one teacher
    inputs = [m.get("input") for m in metas]
    for key, values, differ in (
            ("architectures", arch, any(a != arch[0] for a in arch[1:])),
            ("embedding spaces", spaces, not shared and any(m.get("embedding_space") for m in metas)),  # two teachers
            ("inputs", inputs, not shared and len(set(inputs)) > 1)):  # one space: a teacher and its students
        if differ:
            raise ValueError(f"cannot average checkpoints with different {key}: "
                             + "; ".join(f"{f}: {v}" for f, v in zip(folders, values)))
    if not shared and not metas[0]["model"].get("pretrained"):
        log.warning("averaging checkpoints without a shared starting point (no pretrained weights, no teacher): models "
                    "trained from different random initialisations do not average into a working model")
    states = [load_file(str(f / "model.safetensors")) for f in folders]
    total = sum(weights)
    avg = {}
    for name, first in states[0].items():
        if any(name not in s or s[name].shape != first.shape for s in states[1:]):
            raise ValueError(f"cannot average: weight {name} is missing or of another shape in some checkpoint")
        if first.is_floating_point():
            avg[name] = (sum(w * s[name].double() for w, s in zip(weights, states)) / total).to(first.dtype)
        elif all(s[name].equal(first) for s in states[1:]):
            avg[name] = first
        else:
            raise ValueError(f"cannot average: integer buffer {name} differs between checkpoints")
    model = SingerModel(ModelConfig.from_dict(metas[0]["model"]))
    model.load_state_dict(avg)
    backends = [ScoringBackend.load(f) for f in folders]
    same = all(b is not None for b in backends) and all(_same_backend(backends[0], b) for b in backends[1:])
    if not same and any(b is not None for b in backends):
        log.warning("the checkpoints carry different scoring backends (or some none): the average has none; fit one "
                    "with `singerid fit-scoring --checkpoint %s`", out)
    lead = next((m for m in metas if m.get("input") == "mixture"), metas[0])  # a student with its teacher: reads mixtures
    keep = {k: lead[k] for k in ("input", "frontend", "distilled") if k in lead}
    if shared and same:
        keep["embedding_space"] = spaces[0]
    extra = keep | {"average": {"from": [str(f.resolve()) for f in folders], "weights": weights}}
    files = {"backend.safetensors": lambda p: backends[0].save(p.parent)} if same else {}
    return save_model(Path(out), model, extra, files)


def _same_backend(a, b) -> bool:
    import numpy as np

    return (a.info == b.info and np.array_equal(a.mean, b.mean) and np.array_equal(a.transform, b.transform)
            and (a.cohort is None) == (b.cohort is None) and (a.cohort is None or np.array_equal(a.cohort, b.cohort)))
