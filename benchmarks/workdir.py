"""A copy of the project to benchmark in, and its params changed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

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


def _flat(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_params(path: Path, overrides: dict[str, Any]) -> None:
    """Set dotted keys (a nested mapping sets each of its keys) in a params.yaml, written in the committed
    layout with its comments (docs.build); an unknown key is a KeyError.

    Not DVC's `-S` parser: given `[]` for a list that has a comment on its key's line, it writes a file
    that no longer reads as YAML (ruamel.yaml's comment handling; docs/troubleshooting.md)."""
    from docs.build import params_file

    values = YAML(typ="safe", pure=True).load(path.read_text())
    for dotted, value in _flat(overrides).items():
        *parents, last = dotted.split(".")
        node = values
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise KeyError(f"{dotted} is not a key of {path}")
        node[last] = value
    path.write_text(params_file(yaml.safe_dump(values, sort_keys=False)))
