"""Two commits' stored results side by side, with ratios: `python -m benchmarks.run compare A B`.

A and B are commits (any prefix git resolves, or a results folder's name such as `fe2718118e0f`).
For every config stored for both on the machine (default: this one), each number the results hold
(their figures, flattened to dotted paths; a list's items named by their `label`, `stage`, `seed` or `name`) is shown
with B / A. Only numbers both results have are shown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.markdown import measured_on, table
from benchmarks.results import RESULTS, ROOT, machine, machine_name


def folder_of(revision: str, machine_folder: Path) -> Path:
    """The results folder of a commit (or a folder given by name) on one machine."""
    if (machine_folder / revision).is_dir():
        return machine_folder / revision
    resolved = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=ROOT,
                              capture_output=True, text=True)
    if resolved.returncode != 0:
        raise SystemExit(f"error: {revision!r} is neither a commit nor a folder of {machine_folder}")
    commit = resolved.stdout.strip()[:12]
    for name in (commit, f"{commit}-dirty"):
        if (machine_folder / name).is_dir():
            return machine_folder / name
    stored = ", ".join(sorted(p.name for p in machine_folder.iterdir())) if machine_folder.is_dir() else "none"
    raise SystemExit(f"error: no results of {revision} ({commit}) in {machine_folder}; stored: {stored}")


NAMING_KEYS = ("label", "stage", "seed", "name")


def _name(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in NAMING_KEYS:
            if key in item:
                return str(item[key])
    return str(index)


def numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Every number in `data` by dotted path; list items named by their label, stage, seed or name, else index."""
    found: dict[str, float] = {}
    if isinstance(data, bool):
        return found
    if isinstance(data, (int, float)):
        return {prefix: float(data)}
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = [(_name(item, i), item) for i, item in enumerate(data)]
    else:
        return found
    for key, value in items:
        found.update(numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def compare(first: dict[str, Any], second: dict[str, Any]) -> str:
    """One config's two results as a Markdown table: each shared number, and the ratio second / first."""
    a, b = numbers(first["figures"]), numbers(second["figures"])
    rows = [[key, f"{a[key]:.6g}", f"{b[key]:.6g}", f"{b[key] / a[key]:.3f}" if a[key] else ""]
            for key in a if key in b]
    return "\n".join([f"### `{first['config']}`", "", f"A: {measured_on(first)}.", f"B: {measured_on(second)}.", "",
                      table(["figure", "A", "B", "B / A"], rows, "lrrr") if rows else "No number in common.", ""])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run compare", description=__doc__.splitlines()[0])
    parser.add_argument("first", metavar="A")
    parser.add_argument("second", metavar="B")
    parser.add_argument("--machine", help="a folder of benchmarks/results/ (default: this machine's)")
    parser.add_argument("--config", action="append", help="only this config (repeatable)")
    args = parser.parse_args(argv)
    machine_folder = RESULTS / (args.machine or machine_name(machine()))
    first, second = folder_of(args.first, machine_folder), folder_of(args.second, machine_folder)
    shared = sorted({p.name for p in first.glob("*.json")} & {p.name for p in second.glob("*.json")})
    if args.config:
        shared = [name for name in shared if name.removesuffix(".json") in args.config]
    if not shared:
        print(f"error: no config stored for both {first.name} and {second.name} in {machine_folder}")
        return 2
    for name in shared:
        print(compare(json.loads((first / name).read_text()), json.loads((second / name).read_text())))
    return 0
