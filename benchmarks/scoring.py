"""The `scoring` kind: `stages.predict` on newly generated customers, with and without its flags.

The project is copied (benchmarks/workdir.py) and `dvc repro` trains the model of the committed
params (not measured); then `rows` customers are generated with another seed (customers the model
has never seen, CSV) and scored by each variant in turn, `rounds` times, alternating variants so
that a change in the machine's load falls on all of them alike.

Options (benchmarks/configs.yaml): `rows`; `rounds`; `variants`, a name for each set of extra
`stages.predict` arguments (`[]`: none).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.markdown import about, table
from benchmarks.measure import child_env, run_measured
from benchmarks.results import load_average
from benchmarks.workdir import project_copy, set_params

NEW_CUSTOMERS_SEED = 20261201


def new_customers(workdir: Path, rows: int, log: Path) -> Path | None:
    """`rows` customers the model of `workdir` has never seen (another seed), as CSV; None when that fails."""
    params = workdir / "new-customers.yaml"
    shutil.copy(workdir / "params.yaml", params)
    set_params(params, {"generate.rows": rows, "base.seed": NEW_CUSTOMERS_SEED})
    customers = workdir / "new-customers.csv"
    made = run_measured(["python", "-m", "stages.generate", "--params", str(params), "--output", str(customers),
                         "--probabilities", str(workdir / "new-probabilities.parquet")], workdir, child_env(), log)
    return customers if made["exit_code"] == 0 else None


def predict(workdir: Path, customers: Path, arguments: list[Any], log: Path) -> dict[str, Any]:
    """`stages.predict` on `customers` with the model of `workdir`, measured; `load_before` its start's load."""
    before = load_average()
    measured = run_measured(["python", "-m", "stages.predict", "--input", str(customers),
                             "--output", str(workdir / "scores.csv"), *map(str, arguments)], workdir, child_env(), log)
    return {**measured, "load_before": before}


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="propensity-bench-scoring-"))
    log = logs / "scoring.log"
    try:
        project_copy(workdir)
        print(f"[scoring] dvc repro in {workdir}", file=sys.stderr)
        if run_measured(["dvc", "repro", "-q"], workdir, child_env(), log)["exit_code"] != 0:
            figures["failed"] = f"dvc repro failed, see {log}"
            return False
        customers = new_customers(workdir, options["rows"], log)
        if customers is None:
            figures["failed"] = f"generating the customers failed, see {log}"
            return False
        figures.update({"rows": options["rows"], "input": "csv", "variants": {}})
        for _ in range(options["rounds"]):
            for name, arguments in options["variants"].items():
                measured = predict(workdir, customers, arguments, log)
                figures["variants"].setdefault(name, []).append(measured)
                print(f"[scoring] {name}: {measured['wall_s']:.1f} s", file=sys.stderr)
                save()
        return all(m["exit_code"] == 0 for runs in figures["variants"].values() for m in runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def median_wall_s(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["wall_s"] for r in runs)


def summary(result: dict[str, Any]) -> str:
    figures = result["figures"]
    rows = []
    for name, runs in figures.get("variants", {}).items():
        loads = [r["load_average"] for r in runs]
        rows.append([name, ", ".join(f"{r['wall_s']:.1f}" for r in runs), f"{median_wall_s(runs):.1f}",
                     f"{min(loads):.1f}-{max(loads):.1f}"])
    return about(result) + "\n\n" + table(["variant", "wall s, each round", "median", "load"], rows, "llrl") + "\n"
