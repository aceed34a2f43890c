"""Uploaded files on the server's disk: where they go, how they are named, and that none outlives its request.

- While an upload streams in and is checked it lives in `<catalogue>/tmp/<pid>/` under a random name, and is removed
  on every outcome; a process killed mid-request leaves its folder, removed at the next start (its pid is gone).
- A file kept for enrolment is named by its content, `<catalogue>/uploads/<sha256><ext>`: two uploads with one name
  never overwrite each other, the same audio is stored once, and a retry after a crash reuses the file. Unreferenced
  kept files older than a grace period (a crash between storing and committing) are removed at start.
- Client file names are display names only, never path components; `.`, `..`, empty and over-long names are refused.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from ..catalogue.store import file_sha

log = logging.getLogger(__name__)

MAX_NAME = 255  # longest client file name accepted (as file systems)
CHUNK = 1 << 20


class UploadError(Exception):
    """A request refused with an HTTP status and a reason (never a server path)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def display_name(filename: str | None) -> str:
    """A client's file name → the name we show back (its last path component); refuses names that are no name."""
    name = (filename or "").replace("\\", "/").split("/")[-1].strip()
    if name in ("", ".", ".."):
        raise UploadError(422, f"invalid file name {filename!r}: give the upload a file name" if filename
                          else "every upload needs a file name")
    if len(name) > MAX_NAME or len(filename or "") > 4 * MAX_NAME:
        raise UploadError(422, f"file name longer than {MAX_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise UploadError(422, "file name contains control characters")
    return name


def audio_suffix(name: str) -> str:
    """The name's extension when it looks like one (decoders use it as a hint), else ''."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


class UploadArea:
    def __init__(self, catalogue: str | os.PathLike, max_bytes: int):
        root = Path(catalogue)
        self.tmp = root / "tmp" / str(os.getpid())
        self.kept = root / "uploads"
        self.max_bytes = max_bytes

    def prune(self, referenced, grace_s: float = 600.0) -> None:
        """Remove what killed processes left: temp folders of dead pids, kept files no track refers to."""
        for d in self.tmp.parent.glob("*") if self.tmp.parent.is_dir() else []:
            if d.name.isdigit() and not _alive(int(d.name)):
                shutil.rmtree(d, ignore_errors=True)
        now = time.time()
        for f in self.kept.glob("*") if self.kept.is_dir() else []:
            if f.is_file() and now - f.stat().st_mtime > grace_s and not referenced(str(f)):
                log.info("removing unreferenced upload %s", f.name)
                f.unlink(missing_ok=True)

    async def save(self, upload, name: str) -> Path:
        """Stream an upload to a temp file, at most `max_bytes` (413 past it, 400 when empty) → its path."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"{secrets.token_hex(8)}{audio_suffix(name)}"
        size = 0
        try:
            with open(path, "wb") as fh:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(413, f"{name}: upload larger than {self.max_bytes / 2**20:g} MB")
                    fh.write(chunk)
            if size == 0:
                raise UploadError(400, f"{name}: empty upload")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def keep(self, tmp: Path) -> Path:
        """Move a checked temp file to its content-addressed place (or drop it when that content is already there)."""
        self.kept.mkdir(parents=True, exist_ok=True)
        target = self.kept / f"{file_sha(tmp)}{tmp.suffix}"
        if target.exists():
            tmp.unlink(missing_ok=True)
            os.utime(target)  # fresh again: not pruned while this request commits it
        else:
            os.replace(tmp, target)
        return target


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
