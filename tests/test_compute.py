"""Where the work runs: usable cores, `auto` thread counts, and the Dask engine giving the local engine's results."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from stages.lib import compute, models
from stages.lib.files import read_json
from stages.lib.params import ModelParams
from stages.lib.preprocessing import preprocess_customers
from stages.lib.schema import split_features
from stages.lib.synthetic import generate_customers
from stages.lib.tuning import tune_hyperparameters
from tests.helpers import (
    PYTHON,
    REPO_ROOT,
    child_env,
    copy_repo,
    customers_to_score,
    dvc,
    edit_params_file,
    free_port,
    new_repo,
    output_md5s,
    parquet_parts_of,
    python_module,
    snapshot,
)


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

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
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

    features, y = train_xy
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{free_port()}")
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:\d+"):
        tune_hyperparameters(features, y, params_with(compute__engine="dask"))


def test_dask_partitions_shuffle_the_rows_and_keep_every_category(train_xy):
    features, y = train_xy
    frames = models.dask_partitions(features, y, 3, seed=42)
    assert sum(len(frame) for frame in frames) == len(y)
    assert sorted(pd.concat(frames)["__label__"].tolist()) == sorted(y.tolist())
    whole = pd.concat(frames, ignore_index=True)
    assert not whole.drop(columns="__label__").reset_index(drop=True).equals(features.reset_index(drop=True))
    for column in features.select_dtypes("category"):
        for frame in frames:
            assert list(frame[column].cat.categories) == list(features[column].cat.categories), column
    # Buyers in every partition (shuffled, not one end of the table).
    assert all(frame["__label__"].sum() > 0 for frame in frames)


@pytest.fixture(scope="module")
def process_cluster():
    """Two single-threaded worker processes: LightGBM's network needs one process per machine."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        yield client


def test_training_on_partitioned_files_gives_the_same_model_every_time(params, train_table, process_cluster,
                                                                       tmp_path):
    folder = tmp_path / "train.parquet"
    folder.mkdir()
    for number, rows in enumerate(np.array_split(np.arange(len(train_table)), 3)):
        train_table.iloc[rows].to_parquet(folder / f"part-{number:05d}.parquet", index=False)
    best = {"learning_rate": 0.05, "num_leaves": 16}
    fits = [models.train_on_dask_from_files(folder, params, best, process_cluster) for _ in range(2)]
    assert fits[0][1] == fits[1][1] == len(train_table)
    assert pickle.dumps(fits[0][0]) == pickle.dumps(fits[1][0])
    local = models.train_model(*split_features(train_table, params.data.id_columns), params, best)
    assert fits[0][0].feature_name_ == local.feature_name_
    assert fits[0][0].booster_.pandas_categorical == local.booster_.pandas_categorical


def test_training_on_dask_gives_the_same_model_every_time(params, train_xy, process_cluster):
    features, y = train_xy
    best = {"learning_rate": 0.05, "num_leaves": 16}
    fits = [models.train_on_dask(features, y, params, best, process_cluster) for _ in range(3)]
    assert all(isinstance(fit, LGBMClassifier) and fit.n_jobs == 1 for fit in fits)
    assert len({pickle.dumps(fit) for fit in fits}) == 1  # model.joblib: the same bytes
    assert list(vars(fits[0])) == sorted(vars(fits[0]))  # and in every process, whatever its string hashing
    text = fits[0].booster_.model_to_string()
    assert "[machines: " not in text and "[local_listen_port: " not in text  # no run's ports in model.txt
    local = models.train_model(features, y, params, best)
    assert fits[0].booster_.pandas_categorical == local.booster_.pandas_categorical
    assert fits[0].feature_name_ == local.feature_name_


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


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path

    def env(self) -> dict[str, str]:
        return child_env(DASK_SCHEDULER_ADDRESS=self.address)


@contextlib.contextmanager
def running_cluster(folder: Path, workers: int = 2):
    """`dask scheduler` and `workers` single-threaded `dask worker` processes (no nanny, no dashboard)
    on 127.0.0.1, logs and --local-directory in `folder`; exactly these processes are stopped on exit."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    # The workers unpickle the pipeline's classes (stages.lib.models): they import this project's code.
    env = child_env(PYTHONPATH=str(REPO_ROOT))
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        with open(folder / f"{name}.log", "w") as log:
            process = subprocess.Popen([DASK_COMMAND, *args], cwd=folder, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        started.append(process)
        return process

    try:
        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                          "--no-dashboard", "--no-show")
        processes = [start(f"worker-{i}", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                           "--no-nanny", "--no-dashboard", "--local-directory", str(folder / f"worker-{i}"))
                     for i in range(workers)]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield Cluster(address, scheduler, processes, folder)
    finally:
        stop(started[1:])  # workers first, so they do not wait for a scheduler that is gone
        stop(started[:1])


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dask_repos(dask_cluster, tmp_path_factory):
    """Two test repositories reproduced with compute.engine dask on the same cluster."""
    repos = []
    for name in ("first", "second"):
        repo = new_repo(tmp_path_factory.mktemp(name) / "repo", {"compute.engine": "dask"})
        dvc("repro", cwd=repo, env=dask_cluster.env())
        repos.append(repo)
    return repos


@pytest.mark.e2e
def test_dvc_repro_on_a_dask_cluster_tunes_as_the_local_engine(reproduced_repo, dask_repos):
    for name in ("metrics/tune.json", "metrics/plots/tune_trace.json", "models/best_params.json"):
        assert read_json(dask_repos[0] / name) == read_json(reproduced_repo / name), name


@pytest.mark.e2e
def test_two_runs_on_a_dask_cluster_give_the_same_dvc_lock(dask_repos):
    assert output_md5s(dask_repos[0]) == output_md5s(dask_repos[1])


@pytest.mark.e2e
def test_a_model_trained_on_dask_ranks_as_well_as_the_local_one(params, dask_cluster, tmp_path):
    """Test average precision within 0.02 of the local model's, on 20,000 generated customers.

    The tests' 3,000 rows are too few to compare: there, two equally good models differ by more
    than 0.02 (the distributed fit bins each feature on one worker's rows, the local one on all).
    """
    from distributed import Client
    from sklearn.metrics import average_precision_score

    params = params.model_copy(update={
        "generate": params.generate.model_copy(update={"rows": 20_000}),
        "model": params.model.model_copy(update={"n_estimators": 300}),
    })
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(customers, params.data, params.preprocess, params.base.seed)
    features, y = split_features(train, params.data.id_columns)
    test_features, test_y = split_features(test, params.data.id_columns)
    best = {"learning_rate": 0.02, "num_leaves": 8, "min_child_samples": 100, "colsample_bytree": 0.6}
    local = models.train_model(features, y, params, best)
    # The same training rows as a directory of files the workers read (preprocess and resample on Dask).
    folder = tmp_path / "train.parquet"
    folder.mkdir()
    for number, rows in enumerate(np.array_split(np.arange(len(train)), 5)):
        train.iloc[rows].to_parquet(folder / f"part-{number:05d}.parquet", index=False)
    with Client(dask_cluster.address, timeout="60s") as client:
        on_dask = models.train_on_dask(features, y, params, best, client)
        from_files, rows = models.train_on_dask_from_files(folder, params, best, client)
    assert rows == len(train)
    models_compared = (local, on_dask, from_files)
    scores = [average_precision_score(test_y, model.predict_proba(test_features)[:, 1]) for model in models_compared]
    assert all(model.booster_.num_trees() == 300 for model in models_compared)
    assert from_files.feature_name_ == local.feature_name_
    assert from_files.booster_.pandas_categorical == local.booster_.pandas_categorical
    assert abs(scores[1] - scores[0]) <= 0.02 and abs(scores[2] - scores[0]) <= 0.02, scores


@pytest.mark.e2e
def test_scoring_partitions_on_dask_gives_the_local_scores(reproduced_repo, dask_cluster, tmp_path):
    customers = customers_to_score(reproduced_repo, tmp_path / "customers.csv", rows=900)
    folder = parquet_parts_of(customers, tmp_path / "customers", parts=4)
    local = tmp_path / "local.parquet"
    python_module("stages.predict", "--input", customers, "--output", local, cwd=reproduced_repo)
    on_dask = tmp_path / "scores"
    result = python_module("stages.predict", "--engine", "dask", "--input", folder / "*.parquet",
                           "--output", on_dask, cwd=reproduced_repo, env=dask_cluster.env())
    assert "scored 900 customers" in result.stdout
    assert sorted(p.name for p in on_dask.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    pd.testing.assert_frame_equal(pd.read_parquet(on_dask), pd.read_parquet(local))


@pytest.mark.e2e
def test_a_worker_killed_mid_fit_is_one_error_line_and_leaves_the_outputs(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    # Many trees, so the fit is still running when the worker goes.
    edit_params_file(repo / "params.yaml", {"compute.engine": "dask", "model.n_estimators": 20000})
    outputs = [repo / "models/model.joblib", repo / "models/model.txt"]
    before = snapshot(outputs)
    folder = tmp_path / "cluster"
    folder.mkdir()
    with running_cluster(folder) as cluster:
        with open(tmp_path / "dvc.log", "w") as log:
            run = subprocess.Popen([PYTHON, "-m", "dvc", "repro", "--single-item", "train"], cwd=repo,
                                   env=cluster.env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not any("Connected to rank" in (folder / f"worker-{i}.log").read_text() for i in range(2)):
                assert run.poll() is None, (tmp_path / "dvc.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(1.0)
            cluster.workers[1].kill()
            run.wait(timeout=300)
        finally:
            stop([run])
    output = (tmp_path / "dvc.log").read_text()
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert run.returncode != 0
    assert len(errors) == 1, output
    assert cluster.address in errors[0] and "lost a worker" in errors[0] and "run the stage again" in errors[0]
    assert "Traceback" not in output
    assert snapshot(outputs) == before


@pytest.mark.e2e
def test_dvc_repro_on_dask_preprocesses_and_samples_a_partitioned_table_and_the_local_engine_takes_it_back(
        reproduced_repo, dask_cluster, tmp_path):
    repo = new_repo(tmp_path / "repo", {"compute.engine": "dask", "data.path": "data/export", "resample.method": "none",
                                        "tune.sample_rows": 1500, "calibration.sample_rows": 1800,
                                        "evaluate.baseline_sample_rows": 1000})
    parquet_parts_of(reproduced_repo / "data/raw/customers.csv", repo / "data/export", parts=3)
    dvc("repro", cwd=repo, env=dask_cluster.env())
    # Preprocess and resample wrote directories; train read the resampled one on the workers.
    for folder in (repo / "data/processed/train.parquet", repo / "data/processed/test.parquet",
                   repo / "data/resampled/train.parquet"):
        assert sorted(p.name for p in folder.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    # tune and calibrate worked on stratified samples the cluster chose.
    assert read_json(repo / "metrics/tune.json")["rows"] == 1500
    assert read_json(repo / "metrics/calibrate.json")["rows"] == 1800
    # evaluate scored the test files on the workers; its baselines were fitted on a sample.
    metrics = read_json(repo / "metrics/metrics.json")
    assert metrics["average_precision"] > 2 * metrics["actual_buyers"] / metrics["test_rows"]  # random: the buyer share
    assert metrics["test_rows"] == len(pd.read_parquet(repo / "data/processed/test.parquet"))
    assert set(metrics["baselines"]) == {"logistic_regression", "default_lightgbm"}
    assert "up to date" in dvc("status", cwd=repo).stdout
    first = output_md5s(repo)
    dvc("repro", "--force", "--single-item", "preprocess", "resample", "train", cwd=repo, env=dask_cluster.env())
    assert output_md5s(repo) == first  # the workers write the same bytes, and train the same model, again
    # The local engine reads the same files in one process and writes the splits as files again.
    edit_params_file(repo / "params.yaml", {"compute.engine": "local"})
    dvc("repro", cwd=repo)
    assert (repo / "data/processed/train.parquet").is_file() and (repo / "data/processed/test.parquet").is_file()
    assert "up to date" in dvc("status", cwd=repo).stdout
