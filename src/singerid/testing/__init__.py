"""Deterministic synthetic audio for tests and demos (no real data needed)."""
from .synth import Voice, accompany, make_catalogue, sing, vocal_stems_table

__all__ = ["Voice", "accompany", "make_catalogue", "sing", "vocal_stems_table"]
