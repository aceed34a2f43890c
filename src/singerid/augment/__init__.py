"""Named, seeded audio augmentations for training singer embeddings that survive effect-heavy vocals and AI clones.

Every augmentation is a pure function `fn(wave, rng, **params)`: [T] float32 mono at 16 kHz → [T] float32, peak ≤ 1,
its parameters drawn from `rng` when not given. The WORLD-based ones need pyworld (`pip install singerid[train]`).

    aug = Augmenter(AugmentConfig(prob=0.5, max_per_example=2), instrumentals=[accompaniment])
    y = aug(wave, np.random.default_rng(seed))
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .codec import CODECS, codec
from .effects import Band, compress, eq, remix, reverb
from .world import autotune, formant_shift, pitch_shift, pyworld_module, vocoder, world_available

log = logging.getLogger(__name__)

Augmentation = Callable[..., np.ndarray]
AUGMENTATIONS: dict[str, Augmentation] = {
    "pitch_shift": pitch_shift, "vocoder": vocoder, "formant_shift": formant_shift, "autotune": autotune,
    "reverb": reverb, "eq": eq, "compress": compress, "codec": codec, "remix": remix,
}
WORLD_BASED = frozenset({"pitch_shift", "vocoder", "formant_shift", "autotune"})
NEEDS_INSTRUMENTALS = frozenset({"remix"})
DEFAULT = tuple(AUGMENTATIONS)


def list_augmentations() -> list[str]:
    return sorted(AUGMENTATIONS)


def check_names(names: Sequence[str]) -> None:
    """ValueError listing the known names when one is unknown."""
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {', '.join(unknown)}; known: {', '.join(list_augmentations())}")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations (by name), each applied with probability prob, at most max_per_example per call."""
    names: tuple[str, ...] = DEFAULT
    prob: float = 0.5
    max_per_example: int = 2


class Augmenter:
    """Applies a random subset of the configured augmentations in random order; a pure function of (wave, rng
    state). remix is skipped when no instrumentals are given; WORLD-based names need pyworld at construction."""

    def __init__(self, config: AugmentConfig = AugmentConfig(), instrumentals: Sequence[np.ndarray] = ()):
        check_names(config.names)
        if not 0.0 <= config.prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {config.prob}")
        for name in WORLD_BASED.intersection(config.names):
            pyworld_module(name)  # fail now, not mid-training
        self.config = config
        self.instrumentals = [np.asarray(i, np.float32) for i in instrumentals]
        skipped = NEEDS_INSTRUMENTALS.intersection(config.names) if not self.instrumentals else set()
        if skipped:
            log.info("no instrumentals given: skipping %s", ", ".join(sorted(skipped)))
        self.names = tuple(n for n in config.names if n not in skipped)

    def choose(self, rng: np.random.Generator) -> list[str]:
        """The augmentations for one example, in the order applied (draws len(names) + 1 numbers from rng)."""
        coins = rng.random(len(self.names)) < self.config.prob
        order = rng.permutation(len(self.names))
        return [self.names[i] for i in order if coins[i]][: self.config.max_per_example]

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[T] at 16 kHz → [T] float32."""
        y = np.asarray(wave, np.float32)
        for name in self.choose(rng):
            extra = (self.instrumentals,) if name in NEEDS_INSTRUMENTALS else ()
            y = AUGMENTATIONS[name](y, rng, *extra)
        return y


__all__ = [
    "AUGMENTATIONS", "DEFAULT", "WORLD_BASED", "CODECS", "AugmentConfig", "Augmenter", "Band", "list_augmentations",
    "world_available", "pitch_shift", "vocoder", "formant_shift", "autotune", "reverb", "eq", "compress", "codec",
    "remix",
]
