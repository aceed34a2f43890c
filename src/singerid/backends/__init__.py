"""Embedding backends by name: trained checkpoints and the pretrained `voice` baseline."""
from __future__ import annotations

from ..embed import CheckpointEmbedder, Embedder

BACKENDS = ("voice",)
DEFAULT_BACKEND = "voice"  # the best measured on the dev protocols (docs/results.md)


def load_embedder(backend: str | None = None, checkpoint: str | None = None, device: str = "cpu") -> Embedder:
    """A checkpoint when given, else the named backend, else the project's default."""
    if checkpoint:
        return CheckpointEmbedder(checkpoint, device)
    name = backend or DEFAULT_BACKEND
    if name == "voice":
        from .voice import VoiceEmbedder

        return VoiceEmbedder(device)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)} (or pass --checkpoint)")
