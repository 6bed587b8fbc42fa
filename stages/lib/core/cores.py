"""The cores this process may use: its CPU affinity, capped by a cgroup CPU quota; and how many the local engine uses.

What may follow the machine is how many independent pieces of work run at once
(fits, folds, partitions), never the work inside one piece (stages.lib.engines.base).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from stages.lib.core.errors import ParamsError

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The cores the local engine uses, below the usable ones (e.g. on a machine shared with other work).
WORKERS_ENV = "PROPENSITY_WORKERS"


def _cgroup_v2_limit(root: Path, own: str) -> float | None:
    """The tightest cpu.max quota (in cores) on the way from this process's cgroup up to the root."""
    limits = []
    folder = root / own.lstrip("/")
    for candidate in [folder, *folder.parents]:
        if candidate == root.parent:
            break
        try:
            quota, period = (candidate / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            limits.append(float(quota) / float(period))
    return min(limits) if limits else None


def _cgroup_v1_limit(root: Path) -> float | None:
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / folder / "cpu.cfs_quota_us").read_text())
            period = int((root / folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            return quota / period
    return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (1.5 = one and a half), None when unlimited."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    own = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
    if (root / "cgroup.controllers").exists():
        return _cgroup_v2_limit(root, own)
    return _cgroup_v1_limit(root)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (rounded down, at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def local_workers() -> int:
    """The cores the local engine uses: the usable cores, or PROPENSITY_WORKERS."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return usable_cores()
    if not value.isdigit() or int(value) < 1:
        raise ParamsError(f"{WORKERS_ENV}={value!r}: expected a whole number of workers (fits side by side) >= 1; "
                          "unset it to use every usable core")
    return int(value)

