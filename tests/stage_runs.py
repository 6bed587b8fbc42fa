"""Run stages and dvc the way a user does: subprocesses, small params, files in a temporary folder.

Shared by the reliability tests (bad inputs, interrupts, reproducibility). A
stage is run as `python -m stages.<name>` from the repository root, so what is
tested is the command line, its exit code and what it prints, not a function.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The committed params shrunk so a whole `dvc repro` takes seconds of work, not a minute.
SMALL_PARAMS = {
    "generate.rows": 3000,
    "tune.n_iter": 2,
    "tune.cv_folds": 2,
    "model.n_estimators": 30,
    "calibration.cv_folds": 2,
    # One LightGBM thread: on a busy machine OpenMP threads spin and slow small fits badly.
    "model.threads": 1,
    # SMOTE, not the committed `none`: synthetic rows are where leakage can happen, so the leakage,
    # resampling and end-to-end tests need them; tests of other methods set theirs explicitly.
    "resample.method": "smote",
}

DELETE = object()  # an edit that removes the key


def copy_tracked_files(destination: Path) -> Path:
    """Copy what a commit of the work tree would hold: tracked and new files, not ignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # not a file: deleted in the work tree but not yet in the index
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def committed_params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


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


def edited_params(edits: dict[str, Any], base: dict | None = None) -> dict:
    """A copy of `base` (default: the small params) with dotted keys set, or removed with DELETE."""
    raw = copy.deepcopy(base if base is not None else edited_params(SMALL_PARAMS, committed_params()))
    for dotted, value in edits.items():
        set_key(raw, dotted, value)
    return raw


def edit_params_file(path: Path, edits: dict[str, Any]) -> Path:
    """Apply dotted-key edits to a params.yaml in place (a repository copy's, say)."""
    return write_params(edited_params(edits, yaml.safe_load(path.read_text())), path)


def write_params(raw: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a stage or dvc run: this venv first on PATH, no debug tracebacks."""
    env = dict(os.environ)
    env.pop("PROPENSITY_DEBUG", None)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def stage_command(stage: str, args: Sequence[str | Path]) -> list[str]:
    return [PYTHON, "-m", f"stages.{stage}", *map(str, args)]


def run_stage(stage: str, args: Sequence[str | Path], timeout: float = 300,
              **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(stage_command(stage, args), cwd=REPO_ROOT, env=child_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def start_stage(stage: str, args: Sequence[str | Path], **env: str) -> subprocess.Popen:
    return subprocess.Popen(stage_command(stage, args), cwd=REPO_ROOT, env=child_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(paths: Sequence[Path]) -> dict[Path, tuple[bytes, int] | None]:
    """Bytes and modification time of each path (None when absent), to prove nothing changed."""
    state = {}
    for path in paths:
        state[path] = (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
    return state


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of an atomic write (`.<name>.<random>.tmp`) anywhere under `folder`."""
    return sorted(folder.rglob(".*.tmp")) if folder.exists() else []
