"""`singerid average`: the weighted mean of several checkpoints of one recipe, written as a checkpoint of its own (a
model soup; several seeds of one distillation recipe averaged measured 57–61 % P3 top-1 against 47–60 % for one run,
docs/results.md)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from .backend import ScoringBackend
from .checkpoint import read_config, resolve_checkpoint, save_model
from .factory import ModelConfig, SingerModel
from .identity import embedding_space

log = logging.getLogger(__name__)


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
    return (a.info == b.info and np.array_equal(a.mean, b.mean) and np.array_equal(a.transform, b.transform)
            and (a.cohort is None) == (b.cohort is None) and (a.cohort is None or np.array_equal(a.cohort, b.cohort)))
