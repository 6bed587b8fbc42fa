"""A copy of the project to benchmark in, and its params changed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from benchmarks.measure import child_env, run_measured
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


def _read_params(path: Path) -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(path.read_text())  # YAML 1.2, as DVC and the stages read it


def _holder(values: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The mapping that holds the dotted key's last part, or None when the key is not in `values`."""
    *parents, last = dotted.split(".")
    node: Any = values
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and last in node else None


def unknown_params(path: Path, keys: Iterable[str]) -> list[str]:
    """The dotted keys that are not in the params file at `path`."""
    values = _read_params(path)
    return [key for key in keys if _holder(values, key) is None]


def set_params(path: Path, overrides: dict[str, Any], source: Path | None = None) -> None:
    """Set dotted keys (a nested mapping sets each of its keys) in a params.yaml (read from `source` where
    given, else from `path`), written to `path` in the committed layout with its comments (docs.build);
    an unknown key is a KeyError.

    Not DVC's `-S` parser: given `[]` for a list that has a comment on its key's line, it writes a file
    that no longer reads as YAML (ruamel.yaml's comment handling; docs/troubleshooting.md)."""
    from docs.build import params_file

    source = path if source is None else source
    values = _read_params(source)
    for dotted, value in _flat(overrides).items():
        holder = _holder(values, dotted)
        if holder is None:
            raise KeyError(f"{dotted} is not a key of {source}")
        holder[dotted.rsplit(".", 1)[-1]] = value
    path.write_text(params_file(yaml.safe_dump(values, sort_keys=False)))


def reproduced_copy(workdir: Path, overrides: dict[str, Any], log: Path, *targets: str) -> bool:
    """A project copy at `workdir` with `overrides` set in its params and `dvc repro -q [targets]` run in it
    (not measured; its output to `log`); whether that succeeded."""
    project_copy(workdir)
    set_params(workdir / "params.yaml", overrides)
    return run_measured(["dvc", "repro", "-q", *targets], workdir, child_env(), log)["exit_code"] == 0
