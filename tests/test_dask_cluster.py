"""The Dask engine on worker processes: its final fit, the stages under `dvc repro`, and clusters that fail.

A real cluster here is a `dask scheduler` and two `dask worker` processes on
127.0.0.1, started by the test and stopped by it (only those processes).
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dask
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from stages.lib.examples import parquet_parts_of
from stages.lib.files import read_json, write_json
from stages.lib.models import train_model
from stages.lib.preprocessing import preprocess_customers
from stages.lib.schema import split_features
from stages.lib.synthetic import generate_customers
from stages.lib.tables import write_table
from tests.helpers import (
    PYTHON,
    REPO_ROOT,
    child_env,
    copy_repo,
    customers_to_score,
    dvc,
    edit_params_file,
    free_port,
    local_dask_engine,
    new_repo,
    output_md5s,
    python_module,
    snapshot,
    write_params,
)

pytestmark = pytest.mark.dask

DASK_COMMAND = str(Path(PYTHON).parent / "dask")
LIGHTGBM_CHATTER = ("[LightGBM]", "Finding random open ports")


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
def running_cluster(folder: Path, workers: int = 2, scheduler_has_code: bool = True, workers_have_code: bool = True):
    """`dask scheduler` and `workers` single-threaded `dask worker` processes (no nanny, no dashboard)
    on 127.0.0.1, logs and --local-directory in `folder`; exactly these processes are stopped on exit.
    Each process imports this project's code (PYTHONPATH) unless told otherwise."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    started: list[subprocess.Popen] = []

    def start(name: str, has_code: bool, *args: str) -> subprocess.Popen:
        env = child_env(PYTHONPATH=str(REPO_ROOT)) if has_code else child_env()
        with open(folder / f"{name}.log", "w") as log:
            process = subprocess.Popen([DASK_COMMAND, *args], cwd=folder, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        started.append(process)
        return process

    try:
        scheduler = start("scheduler", scheduler_has_code, "scheduler", "--host", "127.0.0.1",
                          "--port", address.rsplit(":", 1)[1], "--no-dashboard", "--no-show")
        processes = [start(f"worker-{i}", workers_have_code, "worker", address, "--host", "127.0.0.1",
                           "--nthreads", "1", "--no-nanny", "--no-dashboard",
                           "--local-directory", str(folder / f"worker-{i}"))
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
def process_engine():
    with local_dask_engine(processes=True) as engine:
        yield engine


# --- the final fit: lightgbm.dask, data-parallel ------------------------------------------------------------

def test_training_on_dask_gives_the_same_model_every_time(engine, params, train_table, process_engine, tmp_path):
    folder = parquet_parts_of(train_table, tmp_path / "train.parquet", 3)
    best = {"learning_rate": 0.05, "num_leaves": 16}
    fits = [train_model(process_engine, folder, params, best) for _ in range(2)]
    assert fits[0][1] == fits[1][1] == len(train_table)
    model = fits[0][0]
    assert isinstance(model, LGBMClassifier)
    assert pickle.dumps(model) == pickle.dumps(fits[1][0])  # model.joblib: the same bytes
    assert list(vars(model)) == sorted(vars(model))  # and in every process, whatever its string hashing
    text = model.booster_.model_to_string()
    assert "[machines: " not in text and "[local_listen_port: " not in text  # no run's ports in model.txt
    local, _ = train_model(engine, train_table, params, best)
    assert model.feature_name_ == local.feature_name_
    assert model.booster_.pandas_categorical == local.booster_.pandas_categorical


def test_a_model_trained_on_dask_ranks_as_well_as_the_local_one(engine, params, process_engine, tmp_path):
    """Test average precision within 0.02 of the local model's, on 20,000 generated customers.

    The distributed fit bins each feature on one worker's rows, the local one on all: another,
    equally good model. The tests' 3,000 rows are too few to compare (two equally good models
    differ there by more than 0.02).
    """
    from sklearn.metrics import average_precision_score

    params = params.model_copy(update={
        "generate": params.generate.model_copy(update={"rows": 20_000}),
        "model": params.model.model_copy(update={"n_estimators": 300}),
    })
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(customers, params.data, params.preprocess, params.base.seed)
    test_features, test_y = split_features(test, params.data.id_columns)
    best = {"learning_rate": 0.02, "num_leaves": 8, "min_child_samples": 100, "colsample_bytree": 0.6}
    local, _ = train_model(engine, train, params, best)
    on_dask, rows = train_model(process_engine, parquet_parts_of(train, tmp_path / "train.parquet", 5), params, best)
    assert rows == len(train) and on_dask.booster_.num_trees() == 300
    scores = [average_precision_score(test_y, model.predict_proba(test_features)[:, 1]) for model in (local, on_dask)]
    assert abs(scores[1] - scores[0]) <= 0.02, scores


# --- the stages under dvc repro ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_repos(dask_cluster, tmp_path_factory):
    """A test repository reproduced with compute.engine dask (and nothing else changed) on one cluster, and a
    copy whose stages that run on the workers partition by partition (preprocess, resample, train) ran again."""
    first = new_repo(tmp_path_factory.mktemp("first") / "repo", {"compute.engine": "dask"})
    dvc("repro", cwd=first, env=dask_cluster.env())
    # tune, calibrate and evaluate are compared with the local engine's bytes by the test below.
    second = copy_repo(first, tmp_path_factory.mktemp("second") / "repo")
    dvc("repro", "--force", "--single-item", "preprocess", "resample", "train", cwd=second, env=dask_cluster.env())
    return [first, second]


@pytest.mark.e2e
def test_dvc_repro_on_a_dask_cluster_splits_preprocesses_and_tunes_as_the_local_engine(reproduced_repo, dask_repos):
    repo = dask_repos[0]
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(repo / f"data/processed/{split}.parquet"),
                                      pd.read_parquet(reproduced_repo / f"data/processed/{split}.parquet"))
    local, on_dask = output_md5s(reproduced_repo), output_md5s(repo)
    assert on_dask["models/preprocessor.joblib"] == local["models/preprocessor.joblib"]
    for name in ("metrics/tune.json", "metrics/plots/tune_trace.json", "models/best_params.json",
                 "metrics/calibrate.json"):
        assert read_json(repo / name) == read_json(reproduced_repo / name), name
    assert read_json(repo / "metrics/metrics.json")["baselines"] == \
        read_json(reproduced_repo / "metrics/metrics.json")["baselines"]


@pytest.mark.e2e
def test_two_runs_on_a_dask_cluster_give_the_same_dvc_lock(dask_repos):
    assert output_md5s(dask_repos[0]) == output_md5s(dask_repos[1])


@pytest.mark.e2e
def test_scoring_partitions_on_dask_gives_the_local_scores(reproduced_repo, dask_cluster, tmp_path):
    customers = customers_to_score(reproduced_repo, tmp_path / "customers.csv", rows=900)
    folder = parquet_parts_of(customers, tmp_path / "customers", parts=4)
    local, local_drift = tmp_path / "local.parquet", tmp_path / "local-drift.json"
    python_module("stages.predict", "--input", customers, "--output", local, "--explain", "2",
                  "--drift-report", local_drift, cwd=reproduced_repo)
    on_dask, dask_drift = tmp_path / "scores", tmp_path / "dask-drift.json"
    result = python_module("stages.predict", "--engine", "dask", "--input", folder / "*.parquet",
                           "--output", on_dask, "--explain", "2", "--drift-report", dask_drift,
                           cwd=reproduced_repo, env=dask_cluster.env())
    assert "scored 900 customers" in result.stdout
    assert sorted(p.name for p in on_dask.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    pd.testing.assert_frame_equal(pd.read_parquet(on_dask), pd.read_parquet(local))
    assert read_json(dask_drift) == read_json(local_drift)  # the same counts, added up over partitions


@pytest.mark.e2e
def test_a_worker_killed_mid_fit_is_one_error_line_and_leaves_the_outputs(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    # LightGBM with many trees, so the fit is still running on the workers when one goes.
    edit_params_file(repo / "params.yaml", {"compute.engine": "dask", "model.n_estimators": 20000})
    write_json({"family": "lightgbm", "params": {"num_leaves": 8}}, repo / "models/best_params.json")
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
def test_dvc_repro_on_dask_runs_a_partitioned_table_quietly_and_the_local_engine_takes_it_back(
        reproduced_repo, tmp_path):
    # No DASK_SCHEDULER_ADDRESS: each stage starts a LocalCluster on this machine's cores.
    repo = new_repo(tmp_path / "repo", {"compute.engine": "dask", "data.path": "data/export", "resample.method": "none",
                                        "tune.sample_rows": 1500, "calibration.sample_rows": 1800,
                                        "evaluate.baseline_sample_rows": 1000})
    parquet_parts_of(reproduced_repo / "data/raw/customers.csv", repo / "data/export", parts=3)
    result = dvc("repro", cwd=repo)
    chatter = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(LIGHTGBM_CHATTER)]
    assert not chatter, chatter
    for folder in (repo / "data/processed/train.parquet", repo / "data/processed/test.parquet",
                   repo / "data/resampled/train.parquet"):
        assert sorted(p.name for p in folder.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    # The same test customers as the local engine's run on the same table and seed.
    assert set(pd.read_parquet(repo / "data/processed/test.parquet")["customer_id"]) == \
        set(pd.read_parquet(reproduced_repo / "data/processed/test.parquet")["customer_id"])
    assert read_json(repo / "metrics/tune.json")["rows"] == 1500
    assert read_json(repo / "metrics/calibrate.json")["rows"] == 1800
    metrics = read_json(repo / "metrics/metrics.json")
    assert metrics["average_precision"] > 2 * metrics["actual_buyers"] / metrics["test_rows"]  # random: the buyer share
    assert set(metrics["baselines"]) == {"logistic_regression", "default_lightgbm"}
    assert "up to date" in dvc("status", cwd=repo).stdout
    # The local engine reads the same files in one process and writes the splits as files again.
    edit_params_file(repo / "params.yaml", {"compute.engine": "local"})
    dvc("repro", cwd=repo)
    assert (repo / "data/processed/train.parquet").is_file() and (repo / "data/processed/test.parquet").is_file()
    assert "up to date" in dvc("status", cwd=repo).stdout


# --- a cluster that cannot run the project: one line, fast, outputs as they were ---------------------------------

@pytest.fixture
def dask_train(raw_params, resampled_table, tmp_path):
    """Runs train with compute.engine dask against an address; returns (exit code, stderr, seconds) and
    checks that the model files already there were left as they were."""
    raw_params["compute"]["engine"] = "dask"
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    write_table(resampled_table, tmp_path / "train.parquet")
    write_json({"family": "lightgbm", "params": {"num_leaves": 8}}, tmp_path / "best.json")
    outputs = [tmp_path / "model.joblib", tmp_path / "model.txt"]
    for output in outputs:
        output.write_text("the model of an earlier run\n")

    def run(address: str) -> tuple[int, str, float]:
        before = snapshot(outputs)
        started = time.monotonic()
        result = python_module("stages.train", "--params", params_path, "--train", tmp_path / "train.parquet",
                               "--best-params", tmp_path / "best.json", "--model", outputs[0],
                               "--model-text", outputs[1], check=False, timeout=120,
                               env=child_env(DASK_SCHEDULER_ADDRESS=address))
        assert snapshot(outputs) == before
        return result.returncode, result.stderr, time.monotonic() - started
    return run


def one_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("scheduler_has_code, who", [(False, "the Dask scheduler at"),
                                                     (True, "the workers of the Dask scheduler at")])
def test_a_cluster_without_the_projects_code_is_one_line_not_a_hang(dask_train, tmp_path, scheduler_has_code, who):
    with running_cluster(tmp_path, workers=1, scheduler_has_code=scheduler_has_code,
                         workers_have_code=not scheduler_has_code) as cluster:
        code, stderr, seconds = dask_train(cluster.address)
    line = one_error(stderr)
    assert code == 2 and seconds < 30
    assert line.startswith(f"error: {who} {cluster.address} cannot import this project's code")
    assert "No module named 'stages'" in line and "PYTHONPATH" in line


@contextlib.contextmanager
def silent_listener():
    """A program that accepts connections on a port of 127.0.0.1 and never answers (not a Dask scheduler)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held, done = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_a_port_held_by_another_program_is_one_line_not_a_hang(dask_train):
    with silent_listener() as address:
        code, stderr, seconds = dask_train(address)
    line = one_error(stderr)
    assert code == 2 and seconds < 60, seconds
    assert line.startswith(f"error: cannot reach the Dask scheduler at {address}") and "unset it" in line


def test_an_unreachable_scheduler_is_one_line_not_a_hang(dask_train):
    address = f"tcp://127.0.0.1:{free_port()}"
    code, stderr, seconds = dask_train(address)
    assert code == 2 and seconds < 60, seconds
    assert one_error(stderr).startswith(f"error: cannot reach the Dask scheduler at {address}")


@pytest.mark.parametrize("listening", [True, False], ids=["port held by another program", "nothing listening"])
def test_the_wait_for_a_scheduler_that_does_not_answer_is_the_connect_timeout(monkeypatch, listening):
    """In-process, so the bound is the engine's own wait and not the interpreter's start-up, which
    a loaded machine stretches."""
    from stages.lib.engines import dask as dask_engine

    limit = dask.utils.parse_timedelta(dask_engine.CONNECT_TIMEOUT)
    with silent_listener() if listening else contextlib.nullcontext(f"tcp://127.0.0.1:{free_port()}") as address:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        started = time.monotonic()
        with pytest.raises(dask_engine.ClusterError, match="cannot reach the Dask scheduler"):
            with dask_engine.start():
                pass
        waited = time.monotonic() - started
    assert waited < limit + 3, waited
