"""The one result format of every benchmark, and where results are stored.

A result records what ran (the config's name, kind and options), on which code (commit, dirty
flag, package versions), where (CPU model, core count, memory, OS), under what load (the 1-minute
load average before and after), and the figures the kind measured. It is stored as

    benchmarks/results/<machine>/<commit>[-dirty]/<config>.json

so a config run again on another machine or commit adds a file instead of replacing one (a tree
outside git, which has no commit to name, stores under `commit-unrecorded/`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

FORMAT = 1
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "imbalanced-learn", "scikit-optimize",
            "dask", "distributed", "dvc")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The cores this process may use (taskset narrows them), not the machine's count.
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "os": f"{platform.system()} {platform.release()}"}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def code_state() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it (stored results aside)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    changes = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changes)}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_name(machine_facts: dict[str, Any]) -> str:
    """A folder name for a machine: its CPU model and core count, e.g. `amd-epyc-2-cores`."""
    cpu = re.sub(r"\((r|tm)\)|cpu|processor|@.*", "", machine_facts["cpu"].lower())
    return f"{re.sub(r'[^a-z0-9]+', '-', cpu).strip('-')}-{machine_facts['cores']}-cores"


def new_result(config: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """A result of `config` on this machine and commit, before anything is measured."""
    return {"format": FORMAT, "config": config, "kind": kind, "options": options, **code_state(),
            "versions": versions(), "machine": machine(), "load": {"before": load_average()},
            "complete": False, "figures": {}}


def path_of(result: dict[str, Any]) -> Path:
    commit = result["commit"][:12] + ("-dirty" if result["dirty"] else "") if result["commit"] else "commit-unrecorded"
    return RESULTS / machine_name(result["machine"]) / commit / f"{result['config']}.json"


def save(result: dict[str, Any], complete: bool = False) -> Path:
    """Write the result (again): after each piece of a long benchmark, so a stopped one keeps what it measured."""
    result["load"]["after"] = load_average()
    result["complete"] = complete
    path = path_of(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
