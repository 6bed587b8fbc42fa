"""A Dask cluster that cannot run the project, cannot be reached or loses a worker: one error line, never a
hang, and every output as it was."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time

import dask
import pytest

from stages.lib.core.files import write_json
from stages.lib.core.tables import write_table
from tests.helpers import (
    PYTHON,
    child_env,
    copy_repo,
    edit_params_file,
    free_port,
    python_module,
    running_cluster,
    snapshot,
    stop,
    write_params,
)

pytestmark = pytest.mark.dask


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


@pytest.fixture
def dask_train(raw_params, resampled_table, tmp_path):
    """Runs train with compute.engine dask against an address; returns (exit code, stdout, stderr) and
    checks that the model files already there were left as they were.

    No test here times the stage: a hang is the subprocess timeout (HANG), far above any start-up a
    loaded machine stretches; that the error comes before the work is shown by the output, which
    lacks the line the engine prints once connected (`dask: on ...`)."""
    raw_params["compute"]["engine"] = "dask"
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    write_table(resampled_table, tmp_path / "train.parquet")
    write_json({"family": "lightgbm", "params": {"num_leaves": 8}}, tmp_path / "best.json")
    outputs = [tmp_path / "model.joblib", tmp_path / "model.txt"]
    for output in outputs:
        output.write_text("the model of an earlier run\n")

    def run(address: str) -> tuple[int, str, str]:
        before = snapshot(outputs)
        result = python_module("stages.train", "--params", params_path, "--train", tmp_path / "train.parquet",
                               "--best-params", tmp_path / "best.json", "--model", outputs[0],
                               "--model-text", outputs[1], check=False, timeout=HANG,
                               env=child_env(DASK_SCHEDULER_ADDRESS=address))
        assert snapshot(outputs) == before
        return result.returncode, result.stdout, result.stderr
    return run


HANG = 600  # seconds: a stage still running then is hung, whatever the machine's load


def one_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("scheduler_has_code, who", [(False, "the Dask scheduler at"),
                                                     (True, "the workers of the Dask scheduler at")])
def test_a_cluster_without_the_projects_code_is_one_line_not_a_hang(dask_train, tmp_path, scheduler_has_code, who):
    with running_cluster(tmp_path, workers=1, scheduler_has_code=scheduler_has_code,
                         workers_have_code=not scheduler_has_code) as cluster:
        code, stdout, stderr = dask_train(cluster.address)
    line = one_error(stderr)
    assert code == 2 and "dask: on" not in stdout and "train:" not in stdout
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
        code, stdout, stderr = dask_train(address)
    line = one_error(stderr)
    assert code == 2 and "dask: on" not in stdout
    assert line.startswith(f"error: cannot reach the Dask scheduler at {address}") and "unset it" in line


def test_an_unreachable_scheduler_is_one_line_not_a_hang(dask_train):
    address = f"tcp://127.0.0.1:{free_port()}"
    code, stdout, stderr = dask_train(address)
    assert code == 2 and "dask: on" not in stdout
    assert one_error(stderr).startswith(f"error: cannot reach the Dask scheduler at {address}")


@pytest.mark.parametrize("listening", [True, False], ids=["port held by another program", "nothing listening"])
def test_the_wait_for_a_scheduler_that_does_not_answer_is_the_connect_timeout(monkeypatch, listening):
    """In-process, so the bound is the engine's own wait and not the interpreter's start-up, which
    a loaded machine stretches."""
    from stages.lib.core.errors import ClusterError
    from stages.lib.engines.dask import cluster
    from stages.lib.engines.dask import engine as dask_engine

    limit = dask.utils.parse_timedelta(cluster.CONNECT_TIMEOUT)
    with silent_listener() if listening else contextlib.nullcontext(f"tcp://127.0.0.1:{free_port()}") as address:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        started = time.monotonic()
        with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
            with dask_engine.start():
                pass
        waited = time.monotonic() - started
    assert waited < limit + 3, waited
