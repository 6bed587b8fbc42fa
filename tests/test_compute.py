"""Where the work runs: usable cores, `auto` thread counts, and the Dask engine giving the local engine's results."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from stages.lib import compute
from stages.lib.files import read_json
from stages.lib.params import ModelParams
from stages.lib.tuning import tune_hyperparameters
from tests.helpers import PYTHON, REPO_ROOT, child_env, dvc, free_port, new_repo, output_md5s


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
    assert compute.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v2_without_a_quota_is_unlimited(tmp_path):
    root = tmp_path / "cgroup"
    proc = write_cgroup_v2(root, "/", {"/": "max 100000"})
    assert compute.cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_cfs_quota(tmp_path):
    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("250000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert compute.cgroup_cpu_limit(root, tmp_path / "absent") == 2.5
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert compute.cgroup_cpu_limit(root, tmp_path / "absent") is None


@pytest.mark.parametrize("affinity, quota, expected", [(8, None, 8), (8, 2.5, 2), (8, 0.5, 1), (2, 16.0, 2)])
def test_usable_cores_is_the_affinity_capped_by_the_quota(monkeypatch, affinity, quota, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(compute, "cgroup_cpu_limit", lambda: quota)
    assert compute.usable_cores() == expected


def test_usable_cores_on_this_machine_is_within_its_cpus():
    assert 1 <= compute.usable_cores() <= (os.cpu_count() or 1)


def test_model_threads_auto_is_the_usable_cores():
    assert compute.model_threads(ModelParams(n_estimators=10, threads="auto"), cores=6) == 6
    assert compute.model_threads(ModelParams(n_estimators=10, threads=3), cores=6) == 3


@pytest.mark.parametrize("threads, n_jobs, cores, expected", [
    ("auto", "auto", 2, (2, 1)),     # one fit per core, one thread each
    ("auto", "auto", 64, (6, 10)),   # no more workers than a step's fits (2 points x 3 folds); threads share the rest
    ("auto", 2, 8, (2, 4)),
    (1, "auto", 4, (4, 1)),
    (4, 2, 64, (2, 2)),              # integers as before: the workers share model.threads
    (1, 2, 64, (2, 1)),
])
def test_tuning_workers_never_ask_for_more_than_the_cores(params_with, threads, n_jobs, cores, expected):
    params = params_with(model__threads=threads, tune__n_jobs=n_jobs, tune__cv_folds=3, tune__n_points=2)
    workers, per_fit = compute.tuning_workers(params, cores)
    assert (workers, per_fit) == expected
    if "auto" in (threads, n_jobs) and threads != 1:
        assert workers * per_fit <= cores


def test_the_local_engine_starts_no_cluster(params):
    with compute.joblib_engine(params.compute) as client:
        assert client is None


@pytest.fixture(scope="module")
def in_process_cluster():
    """A small Dask cluster in this process (threads, not processes): the scheduler's address as Dask's config."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_tuning_on_dask_equals_the_local_engine(params_with, train_xy, monkeypatch, in_process_cluster):
    # BayesSearchCV's cross-validation fits through joblib's Dask backend: the same search, bit for bit.
    features, y = train_xy
    local = tune_hyperparameters(features, y, params_with(tune__n_jobs=2, tune__n_iter=3, tune__n_points=2))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", in_process_cluster)
    on_dask = tune_hyperparameters(features, y, params_with(compute__engine="dask", tune__n_jobs=2, tune__n_iter=3,
                                                            tune__n_points=2))
    assert on_dask.best_params == local.best_params
    assert on_dask.best_score == local.best_score
    assert on_dask.trace == local.trace
    assert on_dask.rows == local.rows


def test_an_unreachable_scheduler_is_one_clear_error(params_with, train_xy, monkeypatch):
    from stages.lib.errors import ClusterError
    from tests.helpers import free_port

    features, y = train_xy
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:\d+"):
        tune_hyperparameters(features, y, params_with(compute__engine="dask"))


# --- A real cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1 -------------------------------

DASK_COMMAND = str(Path(PYTHON).parent / "dask")


def stop(processes: list[subprocess.Popen], timeout: float = 15) -> None:
    """Terminate exactly these processes; kill any still running after `timeout`."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_cluster(folder: Path, workers: int = 2):
    """`dask scheduler` and `workers` single-threaded `dask worker` processes (no nanny, no dashboard)
    on 127.0.0.1, logs and --local-directory in `folder`; yields the scheduler's address. Exactly
    these processes are stopped on exit."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    # The workers unpickle the pipeline's classes (stages.lib.models): they import this project's code.
    env = child_env(PYTHONPATH=str(REPO_ROOT))
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(folder / f"{name}.log", "w") as log:
            started.append(subprocess.Popen([DASK_COMMAND, *args], cwd=folder, env=env, stdout=log,
                                            stderr=subprocess.STDOUT))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
              "--no-dashboard", "--no-show")
        for i in range(workers):
            start(f"worker-{i}", "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                  "--no-dashboard", "--local-directory", str(folder / f"worker-{i}"))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        stop(started[1:])  # workers first, so they do not wait for a scheduler that is gone
        stop(started[:1])


@pytest.fixture(scope="module")
def dask_repos(tmp_path_factory):
    """Two test repositories reproduced with compute.engine dask on one real cluster."""
    repos = []
    with running_cluster(tmp_path_factory.mktemp("dask")) as address:
        for name in ("first", "second"):
            repo = new_repo(tmp_path_factory.mktemp(name) / "repo", {"compute.engine": "dask"})
            dvc("repro", cwd=repo, env=child_env(DASK_SCHEDULER_ADDRESS=address))
            repos.append(repo)
    return repos


@pytest.mark.e2e
def test_dvc_repro_on_a_dask_cluster_tunes_as_the_local_engine(reproduced_repo, dask_repos):
    for name in ("metrics/tune.json", "metrics/plots/tune_trace.json", "models/best_params.json"):
        assert read_json(dask_repos[0] / name) == read_json(reproduced_repo / name), name


@pytest.mark.e2e
def test_two_runs_on_a_dask_cluster_give_the_same_dvc_lock(dask_repos):
    assert output_md5s(dask_repos[0]) == output_md5s(dask_repos[1])
