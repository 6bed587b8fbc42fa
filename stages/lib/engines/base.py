"""Where the work runs: the engine interface, the cores this process may use, and the threads of one fit.

The library says *what* is computed: functions of one partition of a table
(its statistics, its split, its sample, its scores) and model fits. An engine
says *where*: `stages.lib.engines.local.engine` runs the partition functions in this
process and independent fits side by side in joblib's threads, sized to the usable cores;
`stages.lib.engines.dask.engine` runs both on a Dask cluster. A stage opens the engine
`compute.engine` names once (`open_engine`) and hands it to the library, so both
engines compute the same thing from the same functions.

What may follow the machine is how many independent pieces of work run at once
(fits, folds, partitions), never the work inside one piece: the outputs are the
same bytes on one core or sixty-four. `model.threads` (threads inside one fit) is
a committed count, or `auto` where a fit's result does not depend on it.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.errors import ParamsError
from stages.lib.core.params import ComputeParams, ModelParams

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The cores the local engine uses, below the usable ones (e.g. on a machine shared with other work).
WORKERS_ENV = "PROPENSITY_WORKERS"
# The local engine runs up to this many independent fits per core at once, so that the operating system
# evens out a batch whose fits do not divide among the cores (3 folds on 2 cores: all 3 at once, not 2 then 1).
FITS_PER_CORE = 2


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


Partition = pd.DataFrame
PartitionFunction = Callable[..., Any]


class Engine(abc.ABC):
    """Where the pieces of a stage's work run; the library calls these and nothing else of an engine.

    A table (a CSV or parquet file, or a directory or glob of parquet files) is a
    sequence of partitions, one per file, in name order. Partition functions are
    called as `function(partition, offset, *shared)`, `offset` being the number of
    the partition's first row in the whole table; their results come back in
    table order. A function must not depend on how the table is cut into files:
    the algorithms built on them (stages.lib.data.sampling, stages.lib.data.split)
    give the same answer from one partition or from many.
    """

    name: str
    # The cores (or the cluster's worker threads) independent work shares.
    workers: int

    @abc.abstractmethod
    def map(self, function: PartitionFunction, path: str | Path, *shared: Any, columns: Sequence[str] | None = None,
            combine: Callable[[list], Any] | None = None) -> Any:
        """Each partition's `function(partition, offset, *shared)`, in table order; with `combine`
        (a function of a list of results, associative), the one combined result. `columns`: read
        only these."""

    @abc.abstractmethod
    def write(self, function: PartitionFunction, path: str | Path, outputs: Sequence[str | Path],
              *shared: Any) -> list:
        """Write tables made partition by partition: `function(partition, offset, *shared)` returns
        (a frame for each output, a small result); each output is replaced, atomically, once every
        partition is written. Returns the small results in table order."""

    @abc.abstractmethod
    def gather(self, path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole table in this process."""

    @abc.abstractmethod
    def repeated_rows(self, path: str | Path, id_columns: Sequence[str]) -> np.ndarray:
        """Numbers of the rows that repeat an earlier row's IDs (every repeat but an ID's first row)."""

    @abc.abstractmethod
    def jobs(self, fits: int) -> int:
        """How many of a batch of `fits` independent fits run at once."""

    @abc.abstractmethod
    def fit_threads(self, model: ModelParams, fits: int) -> int:
        """LightGBM threads inside each fit of a batch of `fits`: model.threads, or for `auto` the
        cores each fit gets (params.py allows `auto` only where threads cannot change a fit's result)."""

    @contextlib.contextmanager
    def parallel(self, fits: int) -> Iterator[int]:
        """A context in which joblib runs a batch of `fits` independent fits on this engine; yields the
        n_jobs to give them."""
        with self._joblib_backend(self.jobs(fits)):
            yield self.jobs(fits)

    @abc.abstractmethod
    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        """joblib's backend for this engine."""

    @abc.abstractmethod
    def fit(self, classifier, path: str | Path, id_columns: Sequence[str]) -> tuple[Any, int]:
        """`classifier` (an unfitted LGBMClassifier) fitted on every row of a processed table (its
        features and label, stages.lib.data.schema.split_features), as a plain LGBMClassifier; and the rows."""


@contextlib.contextmanager
def open_engine(compute: ComputeParams) -> Iterator[Engine]:
    """The engine compute.engine names, started (a Dask cluster is connected to or started) and,
    on leaving, closed."""
    # Imported by name so that a local stage never imports (or depends, in dvc.yaml, on) the Dask engine.
    module = importlib.import_module(f"stages.lib.engines.{compute.engine}.engine")
    with module.start() as engine:
        yield engine
