"""Helpers shared by commands: backend / separation / cache options to library objects."""
from __future__ import annotations


def _separator(a):
    from ..separation import load_separator, resolve_name
    from ..weights import home

    if a.separate == "auto" and getattr(a, "checkpoint", None):
        from ..models.identity import reads_mixtures

        if reads_mixtures(a.checkpoint):  # a distilled student reads the raw mixture
            return None
    name = resolve_name(a.separate)
    if name in ("none", "given"):
        return None
    return load_separator(name, a.device, None if a.cache == "none" else home() / "separated")


def load_table(path: str, a):
    """A tracks table; with `--separate given`, rows with a `vocals_path` are replaced by that stem."""
    from ..data.manifest import load_tracks

    t = load_tracks(path)
    if getattr(a, "separate", None) == "given":
        has = t["vocals_path"] != ""
        t.loc[has, "path"] = t.loc[has, "vocals_path"]
        t.loc[has, "stem"] = "vocals"
    return t


def _cache_dir(a) -> str | None:
    from ..weights import home

    if a.cache == "none":
        return None
    return a.cache or str(home() / "embeddings")


def _experiment(a):
    from ..embed import load_embedder
    from ..eval.experiments import ExperimentConfig

    cfg = ExperimentConfig(class_counts=a.classes, runs=a.runs, method=a.method, topk_compat=a.topk_compat, seed=a.seed)
    return load_table(a.manifest, a), load_embedder(a.backend, a.checkpoint, a.device), cfg
