"""Where the work runs: usable cores, the local engine's workers, and the threads inside one fit."""

from __future__ import annotations

import os

import pytest

from stages.lib.core import cores
from stages.lib.core.errors import ParamsError
from stages.lib.engines.local.engine import LocalEngine
from tests.helpers import PYTHON, REPO_ROOT, run


def write_cgroup_v2(root, own: str, limits: dict[str, str]):
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for folder, cpu_max in limits.items():
        path = root / folder.lstrip("/") / "cpu.max"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cpu_max + "\n")
    proc = root.parent / "proc_self_cgroup"
    proc.write_text(f"0::{own}\n")
    return proc


def test_cgroup_v2_quota_is_the_tightest_on_the_way_up(tmp_path):
    root = tmp_path / "cgroup"
    proc = write_cgroup_v2(root, "/user.slice/job", {"/": "max 100000", "/user.slice": "300000 100000",
                                                     "/user.slice/job": "150000 100000"})
    assert cores.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v2_without_a_quota_is_unlimited(tmp_path):
    root = tmp_path / "cgroup"
    proc = write_cgroup_v2(root, "/", {"/": "max 100000"})
    assert cores.cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_cfs_quota(tmp_path):
    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("250000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert cores.cgroup_cpu_limit(root, tmp_path / "absent") == 2.5
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cores.cgroup_cpu_limit(root, tmp_path / "absent") is None


@pytest.mark.parametrize("affinity, quota, expected", [(8, None, 8), (8, 2.5, 2), (8, 0.5, 1), (2, 16.0, 2)])
def test_usable_cores_is_the_affinity_capped_by_the_quota(monkeypatch, affinity, quota, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: quota)
    assert cores.usable_cores() == expected


def test_usable_cores_on_this_machine_is_within_its_cpus():
    assert 1 <= cores.usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("value, workers", [("", None), ("3", 3), ("1", 1)])
def test_propensity_workers_sets_the_local_engines_cores(monkeypatch, value, workers):
    monkeypatch.setenv(cores.WORKERS_ENV, value)
    assert cores.local_workers() == (workers if workers is not None else cores.usable_cores())


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_propensity_workers_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv(cores.WORKERS_ENV, value)
    with pytest.raises(ParamsError, match=r"PROPENSITY_WORKERS=.*expected a whole number .* >= 1; unset it"):
        cores.local_workers()


@pytest.mark.parametrize("workers, fits, jobs", [
    (1, 3, 1),     # one core: one fit at a time
    (2, 3, 3),     # 3 fits on 2 cores: all at once, so the last one does not leave a core idle
    (2, 2, 2),
    (2, 6, 4),     # at most 2 fits per core
    (16, 3, 3),
    (16, 1, 1),
])
def test_the_local_engine_runs_a_batch_of_fits_side_by_side(workers, fits, jobs):
    assert LocalEngine(workers).jobs(fits) == jobs


@pytest.mark.parametrize("threads, workers, fits, per_fit", [
    ("auto", 16, 3, 5), ("auto", 16, 1, 16), ("auto", 2, 3, 1), ("auto", 1, 1, 1), (2, 16, 3, 2), (1, 16, 1, 1),
])
def test_auto_threads_share_the_cores_among_the_fits_running_at_once(threads, workers, fits, per_fit):
    assert LocalEngine(workers).fit_threads(threads, fits) == per_fit


def test_a_local_stage_never_imports_dask():
    # The local engine is opened by name; dask and distributed stay unimported (and out of dvc.yaml's deps).
    probe = ("import sys\nfrom stages.lib.engines.base import open_engine\n"
             "with open_engine('local') as engine:\n    print(engine.name, engine.workers)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    lines = run([PYTHON, "-c", probe], REPO_ROOT).stdout.splitlines()
    assert lines[0].startswith("local ") and lines[1] == "[]"
