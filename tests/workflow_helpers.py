"""Throw-away copies of this repository for the workflow tests (remote, predict, report).

A copy holds the files git tracks, its own git history and small params, and
runs the real `dvc` and `python -m stages.*` commands as a user would. The
first test that needs a reproduced copy builds it; later tests in the same
pytest process reuse it (see `reproduced_repo`), so the pipeline runs once.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from stage_runs import SMALL_PARAMS, child_env, copy_tracked_files, edit_params_file
from stages.predict import MODEL_FILES  # noqa: F401  (the files a teammate pulls to score)


def command_env(**extra: str) -> dict[str, str]:
    """The environment of every command: a stage's (child_env), git identity, no DVC analytics."""
    env = child_env()
    env.update({
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "DVC_NO_ANALYTICS": "1",
    })
    # Tests that want AWS credentials pass them explicitly; never pick up a developer's.
    for key in [k for k in env if k.startswith("AWS_")]:
        del env[key]
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command; on an unexpected exit code fail with its output, which says why."""
    result = subprocess.run(args, cwd=cwd, env=env or command_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, check)


def git(*args: str, cwd: Path, check: bool = True):
    return run(["git", *args], cwd, check=check)


def python_module(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
                  check: bool = True):
    return run([sys.executable, "-m", module, *args], cwd, env, check)


def set_params(repo: Path, changes: dict[str, object]) -> None:
    """Edit the repository's params.yaml; keys are dotted (`threshold.objective`)."""
    edit_params_file(repo / "params.yaml", changes)


def new_repo(destination: Path) -> Path:
    """A git repository with this project's tracked files and small params, committed."""
    destination.mkdir(parents=True)
    copy_tracked_files(destination)
    set_params(destination, SMALL_PARAMS)
    git("init", "-q", "-b", "main", cwd=destination)
    git("add", "-A", cwd=destination)
    git("commit", "-q", "-m", "small params", cwd=destination)
    return destination


_REPRODUCED: dict[str, Path] = {}


def reproduced_repo(tmp_path_factory) -> Path:
    """A small copy of the repository after `dvc repro`, with dvc.lock and metrics committed.

    Built once per pytest process and shared: tests must not change it. A test
    that needs to change it copies it first (`copy_repo`).
    """
    if "repo" not in _REPRODUCED:
        repo = new_repo(tmp_path_factory.mktemp("reproduced") / "repo")
        # The committed default remote lives outside the work tree; point this copy at its own.
        dvc("remote", "modify", "--local", "local", "url",
            str(tmp_path_factory.mktemp("unused-remote")), cwd=repo)
        dvc("repro", cwd=repo)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "reproduce with small params", cwd=repo)
        _REPRODUCED["repo"] = repo
    return _REPRODUCED["repo"]


def copy_repo(repo: Path, destination: Path) -> Path:
    """A full copy (work tree, git history, DVC cache) that a test may change."""
    shutil.copytree(repo, destination, symlinks=True)
    return destination


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def customers_to_score(repo: Path, destination: Path, rows: int = 500) -> Path:
    """A scoring input: the head of the generated table, target column kept (an extra column)."""
    import pandas as pd

    table = pd.read_csv(repo / "data/raw/customers.csv", nrows=rows)
    table.to_csv(destination, index=False)
    return destination
