"""Progress where no progress bar shows: tqdm draws only on a terminal, so when stderr is piped or logged, long
loops report through `logging` every few seconds instead ("enrol: 120/360 tracks, 4.1/s, ~59 s left")."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("singerid")


def log_progress(items: Iterable[T], total: int, what: str, unit: str = "tracks", every_s: float = 10.0,
                 enabled: bool = True, stream=None) -> Iterator[T]:
    """Yield `items`; when `stream` (default stderr) is not a terminal, log a line every `every_s` seconds and one at
    the end (if any was logged before)."""
    stream = stream or sys.stderr
    active = enabled and not (hasattr(stream, "isatty") and stream.isatty())
    start = last = time.monotonic()
    done, logged = 0, False
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if active and now - last >= every_s:
            rate = done / max(now - start, 1e-9)
            left = f", ~{(total - done) / rate:.0f} s left" if total > done and rate > 0 else ""
            log.info("%s: %d/%d %s, %.1f/s%s", what, done, total, unit, rate, left)
            last, logged = now, True
    if active and logged:
        log.info("%s: %d/%d %s done in %.0f s", what, done, total, unit, time.monotonic() - start)
