"""Where the work runs: the cores this process may use, `auto` thread counts, and the Dask engine.

`compute.engine: local` (the default) fits in this process and in joblib's worker
processes, as before. `compute.engine: dask` hands the fits to a Dask cluster.
Where that cluster is, is Dask's own configuration, never params.yaml or git:
with DASK_SCHEDULER_ADDRESS set (or `scheduler-address` in ~/.config/dask/*.yaml)
the stage connects to that scheduler; without it, it starts a LocalCluster with
one single-threaded worker process per usable core and closes it when done.

`model.threads: auto` and `tune.n_jobs: auto` use the usable cores without
asking for more: tune's workers times LightGBM threads per fit stays within
them. Thread counts never change results (LightGBM runs with deterministic=True).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from stages.lib.errors import ClusterError
from stages.lib.files import first_line
from stages.lib.params import AUTO, ComputeParams, ModelParams, Params

CGROUP_ROOT = Path("/sys/fs/cgroup")
# How long a stage waits for the scheduler DASK_SCHEDULER_ADDRESS names before it gives up.
CONNECT_TIMEOUT = "30s"


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


def model_threads(model: ModelParams, cores: int | None = None) -> int:
    """LightGBM threads for a stage that fits one model at a time (calibrate, train, evaluate)."""
    if model.threads == AUTO:
        return cores if cores is not None else usable_cores()
    return model.threads


def tuning_workers(params: Params, cores: int | None = None) -> tuple[int, int]:
    """(cross-validation fits side by side, LightGBM threads per fit) for the local engine.

    `tune.n_jobs: auto`: one worker per usable core, but no more than the fits a
    search step runs (tune.n_points x tune.cv_folds). The workers share the stage's
    threads (model.threads, or every usable core for auto): threads // workers
    each, at least 1, so workers x threads never exceeds the cores for auto.
    """
    cores = cores if cores is not None else usable_cores()
    tune = params.tune
    if tune.n_jobs == AUTO:
        workers = max(1, min(cores, tune.n_points * tune.cv_folds))
    else:
        workers = tune.n_jobs
    return workers, max(1, model_threads(params.model, cores) // workers)


def dask_fit_threads(model: ModelParams) -> int:
    """LightGBM threads per fit on a Dask cluster: each fit holds one worker thread, so 1 for auto
    (the cluster's worker threads are its parallelism); an integer model.threads is given to every fit."""
    return 1 if model.threads == AUTO else model.threads


def scheduler_address() -> str | None:
    """The scheduler Dask's configuration names (DASK_SCHEDULER_ADDRESS, ~/.config/dask/*.yaml), or None."""
    import dask

    dask.config.refresh()  # the environment may have changed since dask was imported (tests do that)
    return dask.config.get("scheduler-address", None)


@contextlib.contextmanager
def dask_client(cores: int | None = None) -> Iterator:
    """A distributed Client for compute.engine dask, closed (with any cluster it started) on exit.

    With a scheduler in Dask's configuration, connects to it. Otherwise starts a
    LocalCluster: one worker process per usable core, one thread each, its HTTP server on a
    free port of 127.0.0.1 (never a port another program holds, never other interfaces).
    A cluster that loses a worker or its scheduler while the stage runs ends the
    stage with one ClusterError line; the stage has written nothing by then.
    """
    import logging

    from distributed import Client, LocalCluster

    address = scheduler_address()
    name = f"the Dask scheduler at {address}" if address else "the local Dask cluster"
    with contextlib.ExitStack() as stack:
        if address:
            try:
                client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT))
            except (OSError, TimeoutError) as error:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {address} (DASK_SCHEDULER_ADDRESS or Dask's config): "
                    f"{_gist(error)}; start it, fix the address, or unset it to run on this machine"
                ) from None
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=cores if cores is not None else usable_cores(), threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        try:
            yield client
        except Exception as error:
            if not lost_cluster(error):
                raise
            raise ClusterError(
                f"{name} lost a worker or its connection mid-stage ({_gist(error)}); outputs were left "
                "as they were; check that every worker is running and has the memory it needs "
                "(its log says why it stopped), then run the stage again"
            ) from None


def _gist(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"


def lost_cluster(error: BaseException) -> bool:
    """Whether an error raised while a Dask cluster ran the stage's work means a worker or the scheduler
    went away (not a bug or bad data, which keep their own messages)."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    if isinstance(error, (KilledWorker, FutureCancelledError, CommClosedError)):
        return True
    # lightgbm.dask: a machine whose peer died fails in LightGBM's network code.
    text = str(error).lower()
    return type(error).__name__ == "LightGBMError" and any(word in text for word in ("socket", "connect", "network"))


@contextlib.contextmanager
def joblib_engine(compute: ComputeParams) -> Iterator:
    """joblib's parallel backend for compute.engine: yields None (local: loky worker processes, as
    n_jobs says) or the Client whose cluster runs every joblib task (dask: n_jobs is then ignored,
    the cluster's worker threads decide)."""
    if compute.engine != "dask":
        yield None
        return
    import joblib

    with dask_client() as client, joblib.parallel_backend("dask"):
        yield client


def tree_reduce(pieces: list, combine: Callable[[list], object], fan_in: int = 8):
    """`combine` over Dask delayed `pieces`, in a tree of tasks, so no one task holds more than
    `fan_in` of them; a delayed result (the one piece itself when there is one)."""
    import dask

    while len(pieces) > 1:
        pieces = [dask.delayed(combine)(pieces[i:i + fan_in]) for i in range(0, len(pieces), fan_in)]
    return pieces[0]
