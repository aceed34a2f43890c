"""Deterministic synthetic audio for tests and demos (no real data needed)."""
from .synth import Voice, accompany, make_catalogue, sing

__all__ = ["Voice", "accompany", "make_catalogue", "sing"]
