"""WORLD vocoder augmentations (pyworld, optional): pitch shift with kept formants, plain re-synthesis, formant
shift and auto-tune-like pitch quantisation. Analysis is dio + stonemask (harvest is ~3× slower) at 5 ms frames."""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from .base import SR, draw, draw_log, finish

log = logging.getLogger(__name__)

FRAME_MS = 5.0
F0_FLOOR = 60.0  # Hz: low bass
F0_CEIL = 1100.0  # Hz: above a soprano's C6
A4 = 440.0
_PYWORLD: ModuleType | None = None


def _extension() -> ModuleType:
    """The compiled pyworld module, loaded past its __init__ (pyworld ≤ 0.3.5 imports pkg_resources, which
    setuptools ≥ 81 no longer ships)."""
    spec = importlib.util.find_spec("pyworld")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pyworld", name="pyworld")
    path = next(p for p in Path(spec.submodule_search_locations[0]).iterdir() if p.name.startswith("pyworld.")
                and p.suffix in (".so", ".pyd"))
    ext_spec = importlib.util.spec_from_file_location("pyworld.pyworld", path)
    module = importlib.util.module_from_spec(ext_spec)
    ext_spec.loader.exec_module(module)
    return module


def _load_pyworld() -> ModuleType:
    try:
        import pyworld
        return pyworld
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            raise
        log.debug("pyworld needs pkg_resources; loading its extension directly")
        return _extension()


def pyworld_module(name: str) -> ModuleType:
    """pyworld, or ImportError naming the augmentation `name` that needs it."""
    global _PYWORLD
    if _PYWORLD is None:
        try:
            _PYWORLD = _load_pyworld()
        except (ImportError, StopIteration) as e:
            raise ImportError(f"install pyworld (pip install singerid[train]) for {name}") from e
    return _PYWORLD


def world_available() -> bool:
    try:
        pyworld_module("world")
        return True
    except ImportError:
        return False


@dataclass
class World:
    """WORLD parameters of a wave: f0 [F] Hz (0 = unvoiced), spectral envelope sp [F, K], aperiodicity ap [F, K]
    with F frames of FRAME_MS and K = fft_size // 2 + 1 bins up to SR / 2."""
    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray


def analyse(wave: np.ndarray, name: str = "world") -> World:
    """[T] at 16 kHz → World parameters."""
    pw = pyworld_module(name)
    x = np.ascontiguousarray(wave, dtype=np.float64)
    f0, t = pw.dio(x, SR, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, SR)
    return World(f0=f0, sp=pw.cheaptrick(x, f0, t, SR, f0_floor=F0_FLOOR), ap=pw.d4c(x, f0, t, SR))


def synthesise(w: World, n: int, name: str = "world") -> np.ndarray:
    """World parameters → [n] at 16 kHz, float32."""
    pw = pyworld_module(name)
    y = pw.synthesize(np.ascontiguousarray(w.f0), np.ascontiguousarray(w.sp), np.ascontiguousarray(w.ap), SR,
                      FRAME_MS)
    return finish(y, n)


def _resynth(wave: np.ndarray, name: str, f0_map=None, sp_map=None) -> np.ndarray:
    """Analyse, map f0 [F] and/or sp [F, K], re-synthesise: [T] → [T]."""
    w = analyse(wave, name)
    if f0_map is not None:
        voiced = w.f0 > 0
        w.f0 = np.where(voiced, f0_map(np.where(voiced, w.f0, 1.0)), 0.0)
    if sp_map is not None:
        w.sp = sp_map(w.sp)
    return synthesise(w, len(wave), name)


def vocoder(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WORLD analysis/re-synthesis with nothing changed, the vocoder artefacts of AI clones: [T] at 16 kHz → [T]."""
    return _resynth(wave, "vocoder")


def pitch_shift(wave: np.ndarray, rng: np.random.Generator, semitones: float | None = None) -> np.ndarray:
    """f0 × 2^(semitones / 12), spectral envelope (formants) kept; semitones ~ U(-5, 5): [T] at 16 kHz → [T]."""
    factor = 2.0 ** (draw(rng, semitones, -5.0, 5.0) / 12.0)
    return _resynth(wave, "pitch_shift", f0_map=lambda f0: f0 * factor)


def warp_envelope(sp: np.ndarray, ratio: float) -> np.ndarray:
    """Move every frequency f of sp [F, K] to ratio · f (linear interpolation, edge bins held): [F, K] → [F, K]."""
    k = sp.shape[1]
    src = np.clip(np.arange(k) / ratio, 0, k - 1)
    lo = np.minimum(src.astype(int), k - 2)
    frac = src - lo
    return sp[:, lo] * (1 - frac) + sp[:, lo + 1] * frac


def formant_shift(wave: np.ndarray, rng: np.random.Generator, ratio: float | None = None) -> np.ndarray:
    """Spectral envelope warped along frequency by ratio (formants move to ratio · f), f0 kept;
    ratio log-uniform in [0.89, 1.12] (±2 semitones): [T] at 16 kHz → [T]."""
    r = draw_log(rng, ratio, 2 ** (-2 / 12), 2 ** (2 / 12))
    return _resynth(wave, "formant_shift", sp_map=lambda sp: warp_envelope(sp, r))


def quantise_f0(f0: np.ndarray, strength: float) -> np.ndarray:
    """Pull f0 [F] Hz (> 0) towards the nearest equal-tempered semitone (A4 = 440 Hz) by strength in [0, 1]."""
    semis = 12.0 * np.log2(f0 / A4)
    return A4 * 2.0 ** ((semis + strength * (np.round(semis) - semis)) / 12.0)


def autotune(wave: np.ndarray, rng: np.random.Generator, strength: float | None = None) -> np.ndarray:
    """Auto-tune-like pitch quantisation, frame by frame (strength 1: hard-tuned steps, vibrato flattened);
    strength ~ U(0.5, 1): [T] at 16 kHz → [T]."""
    s = draw(rng, strength, 0.5, 1.0)
    return _resynth(wave, "autotune", f0_map=lambda f0: quantise_f0(f0, s))
