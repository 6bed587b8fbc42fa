"""The `time-split` kind: what a random split of the dated default claims, beside its out-of-time test.

For each `base.seed` the whole pipeline runs twice on the same generated monthly snapshots
(benchmarks/pipeline.py's runs):

- out of time, as committed: the latest preprocess.test_periods snapshot dates are the test split
  and every fold is in time order;
- a random split, as a user who ignores the dates would run it: data.time_column empty and the
  date among the ID columns (so no row is dropped as a repeat), test rows drawn by seeded hashes of
  (customer, date) with the out-of-time run's test share. The same customers and months are then on
  both sides.

Each run's test average precision is beside the ideal scorer's on its own test rows (the true
probabilities), so the two are compared as shares of the ideal; the gap, random minus out of time,
is reported per seed with its mean and standard error over the seeds.

Options (benchmarks/configs.yaml): `seeds`, `params` (dotted keys set in both runs on top of the
committed params).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from benchmarks.markdown import about, table
from benchmarks.pipeline import benchmark_size
from stages.lib.evaluation.comparison import Comparison

RANDOM_SPLIT = {"data.time_column": None, "data.id_columns": ["customer_id", "snapshot_date"]}


def _side(run: dict[str, Any]) -> dict[str, Any]:
    quality = run["quality"]
    return {"average_precision": quality["average_precision"], "ideal": quality["ideal_average_precision"],
            "of_ideal": quality["average_precision_ratio"], "test_rows": quality["test_rows"],
            "baselines": {name: values["average_precision"] for name, values in quality["baselines"].items()
                          if "average_precision" in values}}


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    params = dict(options.get("params") or {})
    records = figures.setdefault("runs", [])
    for seed in options["seeds"]:
        dated = benchmark_size(f"seed {seed} out of time", {**params, "base.seed": seed}, keep=False,
                               score_rows=None, log_dir=logs)
        record: dict[str, Any] = {"seed": seed, "completed": bool(dated.get("completed"))}
        if record["completed"]:
            record["out_of_time"] = _side(dated)
            share = round(record["out_of_time"]["test_rows"] / dated["rows"], 4)
            shuffled = benchmark_size(f"seed {seed} random split",
                                      {**params, **RANDOM_SPLIT, "preprocess.test_size": share, "base.seed": seed},
                                      keep=False, score_rows=None, log_dir=logs)
            record["completed"] = bool(shuffled.get("completed"))
            if record["completed"]:
                record["random_split"] = _side(shuffled)
        records.append(record)
        save()
    return all(r["completed"] for r in records)


def gaps(result: dict[str, Any]) -> list[float]:
    """Per completed seed: the random split's test average precision minus the out-of-time test's."""
    return [r["random_split"]["average_precision"] - r["out_of_time"]["average_precision"]
            for r in result["figures"]["runs"] if r["completed"]]


def _with_ideal(side: dict[str, Any]) -> str:
    share = side.get("of_ideal")
    return f"{side['average_precision']:.4f}" + (f" ({share:.3f})" if share is not None else "")


def summary(result: dict[str, Any]) -> str:
    """One row per seed, then the mean gap with its verdict (stages.lib.evaluation.comparison's rule).

    A share of the ideal is shown where the run had one; the gap is in plain average precision, which
    every run has (the random split's test rows are other customer-months, so it is a different test).
    """
    done = [r for r in result["figures"]["runs"] if r["completed"]]
    header = ["`base.seed`", "random split AP (of ideal)", "out-of-time AP (of ideal)", "gap, random minus out of time",
              "out of time: logistic regression AP", "out of time: default LightGBM AP"]
    values = gaps(result)
    rows = [[str(r["seed"]), _with_ideal(r["random_split"]), _with_ideal(r["out_of_time"]), f"{gap:+.4f}",
             f"{r['out_of_time']['baselines']['logistic_regression']:.4f}",
             f"{r['out_of_time']['baselines']['default_lightgbm']:.4f}"] for r, gap in zip(done, values)]
    lines = [about(result), "", table(header, rows, "rrrrrr"), ""]
    if len(values) > 1:
        measured = Comparison(mean(values), stdev(values) / math.sqrt(len(values)))
        lines += [f"Mean gap over {len(values)} seeds: {measured.verdict} ({measured.evidence()}; standard error "
                  "of the mean over the seeds).", ""]
    return "\n".join(lines)
