"""The CPU policy: explicit counts, environment overrides, affinity and cgroup quota, workers, every entry point."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from singerid import cpu
from singerid.cli import main


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    n = torch.get_num_threads()
    for k in (cpu.ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    yield
    torch.set_num_threads(n)


def test_explicit_count_wins_then_singerid_env_then_omp(monkeypatch):
    assert cpu.explicit_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu.explicit_threads() == 3
    monkeypatch.setenv(cpu.ENV, "5")
    assert cpu.explicit_threads() == 5
    assert cpu.explicit_threads(2) == 2
    assert cpu.choose_threads(7, processes=4) == 7  # an explicit count is never divided
    monkeypatch.setenv(cpu.ENV, "lots")
    with pytest.raises(ValueError, match="SINGERID_THREADS"):
        cpu.explicit_threads()
    with pytest.raises(ValueError, match="--threads"):
        cpu.explicit_threads(0)


def test_affinity_quota_and_workers_bound_the_default(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: None)
    assert cpu.usable_cpus() == 8
    assert cpu.choose_threads(processes=3, probe_idle=False) == 2  # 8 CPUs shared by 3 working processes
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert cpu.choose_threads(probe_idle=False) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: 1.5)  # a container allowed 1.5 CPUs
    assert cpu.usable_cpus() == 2


def test_cgroup_quota_files(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu.cgroup_quota(v1) == 3.0
    assert cpu.cgroup_quota(tmp_path / "absent") is None


def test_busy_machine_gets_fewer_threads(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: None)
    monkeypatch.setattr(cpu, "short_spin", lambda: False)  # torch imported first: threads spin long
    monkeypatch.setattr(cpu, "idle_cpus", lambda sample_s=0.1: 0.2)  # two neighbours keep both cores busy
    assert cpu.choose_threads() == 1
    monkeypatch.setattr(cpu, "idle_cpus", lambda sample_s=0.1: 1.9)
    assert cpu.choose_threads() == 2
    assert cpu.idle_cpus(0.01) is None or 0 <= cpu.idle_cpus(0.01) <= (os.cpu_count() or 1) + 0.01


@pytest.mark.parametrize("argv", [["--threads", "1", "models"], ["models", "--threads", "1"], ["models", "-v", "--threads", "1"]])
def test_cli_threads_option_before_or_after_the_command(argv, capsys):
    torch.set_num_threads(2)
    assert main(argv) == 0
    assert torch.get_num_threads() == 1


def test_cli_env_override_and_bad_value(monkeypatch, capsys):
    monkeypatch.setenv(cpu.ENV, "1")
    torch.set_num_threads(2)
    assert main(["models"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["models", "--threads", "0"]) == 2
    assert "--threads must be a positive integer" in capsys.readouterr().err


class _Threads(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        return torch.get_num_threads()


def test_decoding_workers_run_one_torch_thread():
    torch.set_num_threads(2)
    loader = DataLoader(_Threads(), batch_size=None, num_workers=1, worker_init_fn=cpu.single_thread_worker)
    assert [int(n) for n in loader] == [1, 1]


def test_short_spin_is_set_before_torch_loads():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, singerid, torch; print(os.environ.get('GOMP_SPINCOUNT'), singerid.SHORT_SPIN)"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.split() == ["10000", "True"]
    code = "import os, torch, singerid; print(os.environ.get('GOMP_SPINCOUNT'), singerid.SHORT_SPIN)"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.split() == ["None", "False"]


@pytest.fixture
def library_process(monkeypatch):
    """A process that never called configure() and imported torch first (threads spin long), on 2 usable CPUs."""
    monkeypatch.setattr(cpu, "_configured", None)
    monkeypatch.setattr(cpu, "_lazy", {})
    monkeypatch.setattr(cpu, "usable_cpus", lambda: 2)
    monkeypatch.setattr(cpu, "short_spin", lambda: False)
    monkeypatch.setattr(cpu, "torch_default_threads", lambda: {2})
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    torch.set_num_threads(2)  # torch's default here


def test_library_entry_points_match_threads_to_the_idle_cpus_at_each_call(library_process, monkeypatch):
    idle = {"cpus": 0.3}
    monkeypatch.setattr(cpu, "idle_cpus", lambda sample_s=0.1, max_age_s=10.0: idle["cpus"])
    cpu.ensure()
    assert torch.get_num_threads() == 1  # two neighbours keep both cores busy: no thread spins against them
    idle["cpus"] = 1.9
    cpu.ensure()
    assert torch.get_num_threads() == 2  # they left: the next call takes both cores
    torch.set_num_threads(3)  # the program's own choice, made between calls, is left alone from then on
    idle["cpus"] = 0.0
    cpu.ensure()
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("chose", ["env", "torch", "configure"])
def test_library_entry_points_leave_a_process_that_chose(library_process, monkeypatch, chose):
    monkeypatch.setattr(cpu, "idle_cpus", lambda sample_s=0.1, max_age_s=10.0: 0.0)
    if chose == "env":
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    elif chose == "torch":
        torch.set_num_threads(3)  # not a count torch starts with
    else:
        monkeypatch.setattr(cpu, "short_spin", lambda: True)
        cpu.configure(2)
    want = torch.get_num_threads()
    cpu.ensure()
    assert torch.get_num_threads() == want


def test_singerid_threads_applies_to_library_calls_too(library_process, monkeypatch):
    monkeypatch.setenv(cpu.ENV, "1")
    cpu.ensure()
    assert torch.get_num_threads() == 1


def test_idle_cpus_counts_this_process_own_work_as_idle():
    """Over the interval since the previous probe, CPU time this process spent is not a neighbour's."""
    import time

    if cpu.idle_cpus(0.01) is None:
        pytest.skip("no /proc/stat")
    wall, used = time.monotonic(), time.process_time()
    while time.process_time() < used + 0.3:  # busy here, on one core
        pass
    share = (time.process_time() - used) / (time.monotonic() - wall)  # of a CPU, whatever the neighbours did
    assert cpu.idle_cpus(0.01) >= 0.8 * share


def test_a_first_or_isolated_probe_reads_the_runnable_threads_without_waiting(monkeypatch):
    """No recent probe (first call, or the last one older than `max_age_s`): the CPUs not taken by the threads runnable
    right now, at once; where /proc/loadavg is unreadable, a short sample instead."""
    import time
    from types import SimpleNamespace

    if cpu._cpu_times() is None:
        pytest.skip("no /proc/stat")
    assert cpu._runnable_others() is not None and cpu._runnable_others() >= 0
    waits = []
    monkeypatch.setattr(cpu, "time", SimpleNamespace(sleep=waits.append, monotonic=time.monotonic))
    cpus = os.cpu_count() or 1
    monkeypatch.setattr(cpu, "_runnable_others", lambda: 1)
    monkeypatch.setattr(cpu, "_last", None)
    assert cpu.idle_cpus() == max(0, cpus - 1) and not waits
    stale = cpu._last[:3] + (cpu._last[3] - 60.0,)
    monkeypatch.setattr(cpu, "_last", stale)
    monkeypatch.setattr(cpu, "_runnable_others", lambda: cpus + 3)  # more runnable threads than CPUs: none idle
    assert cpu.idle_cpus() == 0.0 and not waits and cpu._last != stale
    monkeypatch.setattr(cpu, "_runnable_others", lambda: None)
    monkeypatch.setattr(cpu, "_last", None)
    cpu.idle_cpus(0.01)
    assert waits == [0.01]
