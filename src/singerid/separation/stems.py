"""Give every mixture of a tracks table a vocal stem, separating (once, cached) the ones without `vocals_path`."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from ..audio import SAMPLE_RATE, AudioError, load_audio
from .base import Separator

log = logging.getLogger(__name__)


def ensure_vocal_stems(tracks: pd.DataFrame, separator: Separator, out_dir: str | os.PathLike) -> pd.DataFrame:
    """→ a copy of `tracks` whose mixture rows all have `vocals_path` (separated stems written as 16 kHz FLAC under
    out_dir, named by a hash of the source path; existing files are reused). Unreadable mixtures are dropped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracks = tracks.copy()
    todo = tracks.index[(tracks["stem"] == "mixture") & (tracks["vocals_path"] == "")]
    bad = []
    for i in tqdm(todo, desc=f"separate ({separator.name})", disable=None, unit="track"):
        src = tracks.at[i, "path"]
        target = out / f"{hashlib.sha1(src.encode()).hexdigest()[:16]}_vocals.flac"
        if not target.is_file():
            try:
                stems = separator.separate(load_audio(src))
            except AudioError as e:
                log.warning("skipped %s", e)
                bad.append(i)
                continue
            tmp = target.with_name(target.name + ".tmp.flac")
            sf.write(tmp, stems["vocals"], SAMPLE_RATE)
            os.replace(tmp, target)
        tracks.at[i, "vocals_path"] = str(target)
    return tracks.drop(index=bad)
