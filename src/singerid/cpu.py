"""CPU policy: how many torch threads this process uses, decided in one place for every entry point.

torch's OpenMP threads busy-wait at every barrier. When more runnable threads than cores exist (a second worker, a
decoding process, a neighbour's job), they spin against each other and a 50-ms encoder call can take seconds. So:

- the CPUs we may use = the affinity mask, capped by the cgroup CPU quota (containers);
- an explicit count wins: `--threads N`, else `SINGERID_THREADS`, else `OMP_NUM_THREADS`;
- otherwise threads = usable CPUs // processes working at once (decode workers and service workers get 1 each);
- OpenMP threads spin only briefly at a barrier before sleeping (`GOMP_SPINCOUNT=10000`, set when `singerid` is
  imported before torch). Measured on 2 cores with two CPU hogs beside a 3-min identify: 2 short-spinning threads
  beat 1 thread, and 1 thread beats 2 default-spinning ones (benchmarks/bench_contention.py). Where the short spin
  could not be set (torch was imported first), the thread count is also reduced to the CPUs left idle by others;
- inter-op threads: 1 (our graphs are sequential; extra inter-op threads only add contention).

`configure()` is called by the CLI, the service, benchmarks and worker initialisers. A program that uses the library
directly gets the same policy lazily: the entry points that run the encoder (`Catalogue.identify`/`enroll`,
`load_embedder`, `iter_track_embeddings`, `evaluate`) call `ensure()`, which leaves alone a process that chose for
itself (`configure()` called, $SINGERID_THREADS applied as an explicit count, $OMP_NUM_THREADS or $MKL_NUM_THREADS
set, or `torch.set_num_threads` called with a count other than torch's default) and otherwise applies the policy. Where
torch was imported before singerid, its OpenMP threads keep libgomp's long spin (read once, when libgomp loads), so
`ensure()` matches the thread count to the CPUs other processes leave idle at the start of every call (`idle_cpus`:
since the previous call, or, for a first or isolated call, the threads runnable right now): at most a thread per idle
CPU, so that no thread spins against a neighbour.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "SINGERID_THREADS"


def cgroup_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), None if unlimited."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask, capped by the cgroup quota (rounded up), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cpu_times() -> tuple[float, float] | None:
    try:
        f = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0.0)
    return idle, sum(f)


def _runnable_others() -> int | None:
    """Threads of the whole machine runnable at this instant, the caller's excepted (/proc/loadavg's 4th field)."""
    try:
        return max(0, int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return None


_last: tuple[float, float, float, float] | None = None  # (/proc/stat idle, total, own CPU s, time) of the last probe


def idle_cpus(sample_s: float = 0.1, max_age_s: float = 10.0) -> float | None:
    """CPUs other processes leave idle now: over the interval since the previous call when it lies between
    `sample_s` and `max_age_s` (this process's own CPU time in it counts as idle: it is ours to use again); else, for a
    first or isolated call, the CPUs not taken by the threads runnable at this instant (free, where sampling would
    wait), or over a `sample_s` sample where /proc/loadavg is unreadable. None where /proc/stat is unreadable."""
    global _last

    def probe():
        t = _cpu_times()
        own = os.times()
        return None if t is None else (t[0], t[1], own.user + own.system, time.monotonic())

    now = probe()
    if now is None:
        return None
    if _last is None or not sample_s <= now[3] - _last[3] <= max_age_s:
        others = _runnable_others()
        if others is not None:
            if _last is None or now[3] - _last[3] > max_age_s:
                _last = now  # the next call measures the interval from here (a too recent one waits for it)
            return float(max(0, (os.cpu_count() or 1) - others))
        _last, _ = now, time.sleep(sample_s)
        now = probe()
    before, _last = _last, now
    ticks = now[1] - before[1]
    if ticks <= 0:
        return None
    own_ticks = (now[2] - before[2]) * os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    return min(float(cpus), cpus * (now[0] - before[0] + own_ticks) / ticks)


def explicit_threads(requested: int | None = None) -> int | None:
    """`--threads`, else $SINGERID_THREADS, else $OMP_NUM_THREADS; None when none is set. Invalid values raise."""
    if requested is not None:
        value, source = requested, "--threads"
    else:
        source = next((k for k in (ENV, "OMP_NUM_THREADS") if os.environ.get(k, "").strip()), None)
        if source is None:
            return None
        value = os.environ[source].strip()
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{source} must be a positive integer, not {value!r}") from None
    if n < 1:
        raise ValueError(f"{source} must be a positive integer, not {value!r}")
    return n


def choose_threads(requested: int | None = None, processes: int = 1, probe_idle: bool = True) -> int:
    """Torch intra-op threads for one of `processes` processes working at once on this machine's usable CPUs."""
    n = explicit_threads(requested)
    if n is not None:
        return n
    n = max(1, usable_cpus() // max(1, processes))
    if n > 1 and probe_idle and not short_spin():
        idle = idle_cpus()
        if idle is not None:
            n = max(1, min(n, int(idle + 0.5)))
    return n


def short_spin() -> bool:
    """Did singerid set OpenMP's short spin before torch loaded (or did the user choose a wait policy)?"""
    from . import SHORT_SPIN

    return SHORT_SPIN or "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ


_configured: int | None = None


def configure(threads: int | None = None, processes: int = 1, probe_idle: bool = True) -> int:
    """Apply the policy to torch in this process; returns the intra-op thread count."""
    global _configured
    import torch

    n = choose_threads(threads, processes, probe_idle)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op work; keep whatever is there
        pass
    if n != _configured:
        log.debug("torch threads: %d (usable CPUs %d, %d process(es))", n, usable_cpus(), processes)
    _configured = n
    return n


_lazy: dict = {}  # ensure()'s state: "applied" (the count it last set) or "left" (the process chose for itself)


def torch_default_threads() -> set[int]:
    """Counts torch starts with when nothing is set: a thread per CPU or per physical core (its OpenMP and MKL
    defaults)."""
    cores = set()
    try:
        block: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if ":" in line:
                k, _, v = line.partition(":")
                block[k.strip()] = v.strip()
            elif block:
                cores.add((block.get("physical id"), block.get("core id")))
                block = {}
    except OSError:
        pass
    return {n for n in (os.cpu_count(), usable_cpus(), len(cores)) if n}


def ensure() -> None:
    """The CPU policy for a library entry point that runs the encoder: a no-op where the process configured torch
    itself (see the module's docstring); else the policy's thread count, re-matched to the idle CPUs at every call
    where torch was imported first (threads spin long)."""
    if _configured is not None or _lazy.get("left"):
        return
    import torch

    current = torch.get_num_threads()
    if "applied" not in _lazy:  # the first call: has the program chosen?
        if os.environ.get(ENV, "").strip():
            configure()  # singerid's own variable: an explicit count, applied once
            return
        chose = any(os.environ.get(k, "").strip() for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
        if chose or current not in torch_default_threads():
            _lazy["left"] = True
            return
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # settable once, before any inter-op work: keep what is there
            pass
    elif current != _lazy["applied"]:  # torch.set_num_threads called since: the program's choice from now on
        _lazy["left"] = True
        return
    n = choose_threads()
    if n != current:
        torch.set_num_threads(n)
        log.debug("torch threads: %d (library entry point)", n)
    _lazy["applied"] = n


def single_thread_worker(_worker_id: int | None = None) -> None:
    """Initialiser for decoding workers (DataLoader, process pools): one torch thread, no idle probe."""
    import torch

    torch.set_num_threads(1)
