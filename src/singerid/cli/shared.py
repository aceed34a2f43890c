"""Helpers shared by commands: backend / separation / cache options to library objects."""
from __future__ import annotations


def _separator(a):
    from ..separation import load_separator, resolve_name
    from ..weights import home

    name = resolve_name(a.separate)
    if name == "none":
        return None
    return load_separator(name, a.device, None if a.cache == "none" else home() / "separated")


def _cache_dir(a) -> str | None:
    from ..weights import home

    if a.cache == "none":
        return None
    return a.cache or str(home() / "embeddings")


def _experiment(a):
    from ..backends import load_embedder
    from ..data.manifest import load_tracks
    from ..eval.experiments import ExperimentConfig

    cfg = ExperimentConfig(class_counts=a.classes, runs=a.runs, method=a.method, seed=a.seed)
    return load_tracks(a.manifest), load_embedder(a.backend, a.checkpoint, a.device), cfg
