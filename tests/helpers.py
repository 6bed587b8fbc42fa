"""The one place for the chores tests (and the benchmark) share.

- `test_params(edits)`: a complete, small params mapping that the tests own, so they pass
  whatever the user's params.yaml holds; `set_key` / `edited_params` / `write_params` /
  `edit_params_file` set params by dotted key.
- `new_repo(path)`: a git repository holding this project's code (not the user's data,
  params, lock or metrics) and the tests' params, committed.
- `child_env()`: the environment of a child process; `run`, `dvc`, `git`, `python_module`,
  `start_module`: run commands the way a user does, from a given directory.
- `snapshot`, `temp_files`: prove that outputs were left as they were.
- `recipe_of(params)`: the Recipe a stage's main builds from its params.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The params every test starts from: the committed params.yaml's shape, shrunk so a whole
# `dvc repro` takes seconds of work; undated (a single export, the random split): DATED turns
# them into monthly snapshots with the out-of-time split, as the committed params are. SMOTE, not
# the committed `none`: synthetic rows are where leakage can happen, so the leakage, resampling and
# end-to-end tests need them; tests of other methods set theirs explicitly.
TEST_PARAMS: dict[str, Any] = {
    "base": {"seed": 42},
    "compute": {"engine": "local"},
    "generate": {"rows": 3000, "snapshots": 1, "purchase_rate": 0.04, "truth": "nonlinear"},
    "data": {
        "path": "data/raw/customers.csv",
        "events": "data/raw/events",
        "target": "purchased",
        "positive_label": 1,
        "id_columns": ["customer_id"],
        "categorical_columns": ["gender", "region", "income_band", "device", "traffic_source"],
        "duplicate_ids": "warn",
        "time_column": None,
        "gap_periods": 0,
    },
    # The events' features: one snapshot, two windows, so the stage the tests' table does not read costs little.
    "features": {
        "id_column": "customer_id", "customers": "customers", "joined_column": "joined_on",
        "tables": {"orders": {"timestamp": "ordered_at", "sums": ["amount"]},
                   "sessions": {"timestamp": "started_at", "sums": ["pages", "saw_checkout"]}},
        "snapshots": ["2025-01-31"], "windows": [30, 365], "label_table": "orders", "label_window_days": 28,
        "snapshot_column": "snapshot_date", "label_column": "purchased",
    },
    "preprocess": {"test_size": 0.2, "test_periods": 1, "rare_category_min_count": 10},
    "resample": {"method": "smote", "k_neighbors": 5, "sampling_strategy": 0.5},
    "model": {"family": "auto", "n_estimators": 30, "threads": "auto"},
    "tune": {
        "n_iter": 2,
        "cv_folds": 2,
        "scoring": "average_precision",
        "n_points": 1,
        "sample_rows": "auto",
        "early_stopping_rounds": None,
        "search_space": {
            "learning_rate": {"low": 0.01, "high": 0.2, "prior": "log-uniform"},
            "num_leaves": {"low": 8, "high": 64, "type": "integer"},
            "min_child_samples": {"low": 10, "high": 200, "type": "integer", "prior": "log-uniform"},
            "colsample_bytree": {"low": 0.5, "high": 1.0},
            "reg_lambda": {"low": 0.001, "high": 10.0, "prior": "log-uniform"},
        },
    },
    "calibration": {"method": "isotonic", "cv_folds": 2, "sample_rows": "auto"},
    "threshold": {"objective": "f1", "min_precision": 0.5, "top_fraction": 0.1, "contact_cost": 1.0,
                  "buyer_value": 20.0},
    "evaluate": {"top_fraction": 0.1, "calibration_bins": 10, "baseline_sample_rows": "auto"},
}

# Edits that make TEST_PARAMS dated: four monthly snapshots, the last one the test split, so the three
# training dates make the 2 time-ordered folds of tune and calibrate.
DATED: dict[str, Any] = {"generate.snapshots": 4, "data.time_column": "snapshot_date"}
# Edits that make TEST_PARAMS learn from the generated event tables through the features stage, as the
# committed params do: four monthly snapshots, dated, the static attributes the only categoricals.
FROM_EVENTS: dict[str, Any] = {
    **DATED, "data.path": "data/features/customers.parquet",
    "data.categorical_columns": ["gender", "region", "income_band"],
    "features.snapshots": {"first": "2025-01-31", "last": "2025-04-30", "every": "month"},
}

DELETE = object()  # an edit that removes the key

# What a test repository copies from this one: the code and DVC's configuration. Not
# params.yaml, dvc.lock, metrics/ or the user's own `.dvc` files: the tests bring their own.
PROJECT_FILES = ("stages/", "dvc.yaml", ".dvc/config", ".dvc/.gitignore", ".dvc/plots/", ".dvcignore",
                 ".gitignore", "data/.gitignore", "models/.gitignore", "requirements.txt")


def recipe_of(params):
    """The Recipe a stage's main builds from its params: model.*, resample.* and base.seed."""
    from stages.lib.modeling.estimators import Recipe

    return Recipe(params.model, params.resample, params.base.seed)


def set_key(raw: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested params mapping, or remove it with DELETE."""
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


def edited_params(edits: dict[str, Any] | None = None, base: dict | None = None) -> dict:
    """A copy of `base` (default: TEST_PARAMS) with dotted keys set, or removed with DELETE."""
    raw = copy.deepcopy(base if base is not None else TEST_PARAMS)
    for dotted, value in (edits or {}).items():
        set_key(raw, dotted, value)
    return raw


def write_params(raw: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def edit_params_file(path: Path, edits: dict[str, Any]) -> Path:
    """Apply dotted-key edits to a params.yaml in place (a test repository's, say)."""
    return write_params(edited_params(edits, yaml.safe_load(path.read_text())), path)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a stage, dvc or git run: this venv first on PATH, no debug tracebacks,
    a git identity, no DVC analytics, and no AWS credentials of the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PROPENSITY_DEBUG"}
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1",
    })
    env.update(extra)
    return env


def run(args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command; with `check`, an unexpected exit code fails the test with its output."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env or child_env(), capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return run([PYTHON, "-m", "dvc", *args], cwd, env, check, timeout)


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd, check=check)


def python_module(module: str, *args: str | Path, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None,
                  check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module args` (a stage: `python_module("stages.tune", ...)`)."""
    return run([PYTHON, "-m", module, *args], cwd, env, check, timeout)


def start_module(module: str, *args: str | Path, cwd: Path = REPO_ROOT,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m module args` in the background, for tests that interrupt it."""
    return subprocess.Popen([PYTHON, "-m", module, *map(str, args)], cwd=cwd, env=env or child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def project_files() -> list[str]:
    """This repository's code and DVC configuration, as a commit of the work tree would hold them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    return [name for name in listed
            if name and (REPO_ROOT / name).is_file()  # not a file: deleted but not yet staged
            and any(name == p or (p.endswith("/") and name.startswith(p)) for p in PROJECT_FILES)]


def new_repo(destination: Path, edits: dict[str, Any] | None = None, commit: bool = True,
             base: dict | None = None) -> Path:
    """A git repository with this project's code and params (`base`, default the tests' own, plus
    `edits`), committed."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in project_files():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, destination / name)
    write_params(edited_params(edits, base), destination / "params.yaml")
    git("init", "-q", "-b", "main", cwd=destination)
    # The committed default remote lives outside the work tree, shared; a test repository gets its own.
    dvc("remote", "modify", "--local", "local", "url", str(destination.parent / f"{destination.name}-remote"),
        cwd=destination)
    if commit:
        git("add", "-A", cwd=destination)
        git("commit", "-q", "-m", "test repository", cwd=destination)
    return destination


def copy_repo(repo: Path, destination: Path) -> Path:
    """A full copy (work tree, git history, DVC cache) that a test may change."""
    shutil.copytree(repo, destination, symlinks=True)
    return destination


def snapshot(paths: Sequence[Path]) -> dict[Path, tuple[bytes, int] | None]:
    """Bytes and modification time of each path (None when absent), to prove nothing changed."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None for path in paths}


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of an atomic write (`.<name>.<random>.tmp`) anywhere under `folder`."""
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def customers_to_score(repo: Path, destination: Path, rows: int = 500) -> Path:
    """A scoring input: the head of the generated table, target column kept (an extra column)."""
    import pandas as pd

    pd.read_csv(repo / "data/raw/customers.csv", nrows=rows).to_csv(destination, index=False)
    return destination


@contextlib.contextmanager
def local_dask_engine(processes: bool):
    """The Dask engine on a LocalCluster of two single-threaded workers: in this process, or as worker
    processes (LightGBM's network needs one process per worker)."""
    from distributed import Client, LocalCluster

    from stages.lib.engines.dask.engine import DaskEngine

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield DaskEngine(client)


def scoring_files() -> tuple[str, ...]:
    """The model files a teammate pulls to score (stages.lib.scoring.scorer.MODEL_FILES)."""
    from stages.lib.scoring.scorer import MODEL_FILES

    return MODEL_FILES


def stages_run(dvc_stdout: str) -> list[str]:
    """The stages a `dvc repro` ran, in order, from what it printed."""
    return re.findall(r"Running stage '([^']+)'", dvc_stdout)


def declared_outputs(root: Path) -> list[str]:
    """Every outs/metrics/plots path of every stage in a repository's dvc.yaml, with `${...}` resolved."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    context = yaml.safe_load((root / "params.yaml").read_text())
    for entry in spec.get("vars", []):
        if isinstance(entry, dict):
            context.update(entry)

    def lookup(dotted: str) -> str:
        value = context
        for key in dotted.split("."):
            value = value[key]
        return str(value)

    paths = []
    for stage in spec["stages"].values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                path = entry if isinstance(entry, str) else next(iter(entry))
                paths.append(re.sub(r"\$\{([^}]+)\}", lambda m: lookup(m.group(1)), path))
    return paths


def output_md5s(root: Path) -> dict[str, str]:
    """Every output path in a repository's dvc.lock with its md5."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def output_files(root: Path) -> list[Path]:
    """Every file the pipeline writes (directory outputs expanded), and dvc.lock."""
    paths = [root / p for p in declared_outputs(root)] + [root / "dvc.lock"]
    return sorted(f for p in paths for f in ([p] if not p.is_dir() else p.rglob("*")) if not f.is_dir())


def repro_killed_during(repo: Path, stage: str, log: Path, after_seconds: float = 1.0) -> str:
    """Run `dvc repro`, SIGKILL it `after_seconds` into `stage` (dvc and the stage it runs, as a lost
    machine would); return what it printed."""
    with open(log, "w") as handle:
        # Its own session, so the kill reaches dvc and every process it started.
        run = subprocess.Popen([PYTHON, "-m", "dvc", "repro"], cwd=repo, env=child_env(PYTHONUNBUFFERED="1"),
                               stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while f"Running stage '{stage}'" not in log.read_text():
                assert run.poll() is None, f"dvc repro ended before stage {stage}:\n{log.read_text()}"
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(after_seconds)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    return log.read_text()


# --- a real Dask cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1 -----------------------

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
