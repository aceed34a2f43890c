"""CPU policy: how many torch threads this process uses, decided in one place for every entry point.

torch's OpenMP threads busy-wait at every barrier. When more runnable threads than cores exist (a second worker, a
decoding process, a neighbour's job), they spin against each other and a 50-ms encoder call can take seconds. So:

- the CPUs we may use = the affinity mask, capped by the cgroup CPU quota (containers);
- an explicit count wins: `--threads N`, else `SINGERID_THREADS`, else `OMP_NUM_THREADS`;
- otherwise threads = usable CPUs // processes working at once (decode workers and service workers get 1 each);
- OpenMP threads spin only briefly at a barrier before sleeping (`GOMP_SPINCOUNT=10000`, set when `singerid` is
  imported before torch). Measured on 2 cores with two CPU hogs beside a 3-min identify: 2 short-spinning threads
  beat 1 thread, and 1 thread beats 2 default-spinning ones (benchmarks/bench_contention.py). Where the short spin
  could not be set (torch was imported first), the thread count is also reduced to the CPUs left idle by others
  (sampled once, ~0.1 s);
- inter-op threads: 1 (our graphs are sequential; extra inter-op threads only add contention).

`configure()` is called by the CLI, the service, benchmarks and worker initialisers; library code never sets threads.
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


def idle_cpus(sample_s: float = 0.1) -> float | None:
    """How many CPUs of the machine sat idle over a short sample (None where /proc/stat is unreadable)."""
    a = _cpu_times()
    time.sleep(sample_s)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1])


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


def single_thread_worker(_worker_id: int | None = None) -> None:
    """Initialiser for decoding workers (DataLoader, process pools): one torch thread, no idle probe."""
    import torch

    torch.set_num_threads(1)
