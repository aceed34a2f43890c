"""Which embedding space a model writes into, and what audio it reads.

Two models share a space when their embeddings (after any scoring backend) can be compared: a distilled student is
trained into its teacher's space and carries its scoring backend, so a catalogue enrolled with one can be queried with
the other. A checkpoint may name its space (`embedding_space` in config.json); otherwise it is the hash of its
weights and backend. A pretrained preset's space is `preset:NAME`. A checkpoint with `input: mixture` reads raw
mixtures: identify and evaluate skip separation in front of it by default.
"""
from __future__ import annotations

import hashlib
import os

from .checkpoint import read_config, resolve_checkpoint


def embedding_space(checkpoint: str | os.PathLike | None = None, preset: str | None = None) -> str:
    if checkpoint is None:
        return f"preset:{preset}"
    folder = resolve_checkpoint(checkpoint)
    meta = read_config(folder)
    if meta.get("embedding_space"):
        return str(meta["embedding_space"])
    h = hashlib.sha256()
    for name in ("model.safetensors", "backend.safetensors"):
        f = folder / name
        if f.is_file():
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return f"weights:{h.hexdigest()[:16]}"


def reads_mixtures(checkpoint: str | os.PathLike | None) -> bool:
    """Does this checkpoint read raw mixtures (a distilled student)?"""
    return bool(checkpoint) and read_config(checkpoint).get("input") == "mixture"
