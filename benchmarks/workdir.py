"""A copy of the project to benchmark in, and params changed the way `dvc exp run -S` changes them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.measure import child_env
from benchmarks.results import ROOT

# Tracked, but not what a run of the pipeline needs: its results are made anew in the copy.
NOT_COPIED = ("tests/", "benchmarks/", "docs/", "metrics/", "dvc.lock", "README.md")


def project_copy(destination: Path) -> Path:
    """The files git tracks, as they are in the working tree (the result's dirty flag says whether that
    differs from the commit), in a new git repository at `destination`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if name.startswith(NOT_COPIED) or not (ROOT / name).is_file():
            continue
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    env = child_env()
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@example.invalid",
                     "commit", "-q", "-m", "benchmark copy"]):
        subprocess.run(command, cwd=destination, env=env, check=True)
    return destination


def _hydra(value: Any) -> str:
    """A value in the override grammar `dvc exp run -S` reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra(item) for item in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flat(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_params(path: Path, overrides: dict[str, Any]) -> None:
    """Set dotted keys (a nested mapping sets each of its keys) in a params.yaml, keeping its comments,
    with DVC's own `-S` parser; an unknown key is an error, as it is for `dvc exp run -S`."""
    from dvc.utils.hydra import apply_overrides

    if overrides:
        apply_overrides(path, [f"{key}={_hydra(value)}" for key, value in _flat(overrides).items()])
