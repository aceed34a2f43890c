"""Vocal separation: one interface (`Separator`), backends `spleeter` (offline weights) and `demucs` (optional)."""
from .base import BACKENDS, Separator, load_separator, resolve_name
from .stems import ensure_vocal_stems

__all__ = ["BACKENDS", "Separator", "load_separator", "resolve_name", "ensure_vocal_stems"]
