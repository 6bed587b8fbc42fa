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
    """Per completed seed: the random split's share of the ideal minus the out-of-time test's."""
    return [r["random_split"]["of_ideal"] - r["out_of_time"]["of_ideal"] for r in result["figures"]["runs"]
            if r["completed"]]


def summary(result: dict[str, Any]) -> str:
    done = [r for r in result["figures"]["runs"] if r["completed"]]
    header = ["`base.seed`", "random split AP (of ideal)", "out-of-time AP (of ideal)", "gap (of ideal)",
              "out of time: logistic regression AP", "out of time: default LightGBM AP"]
    rows = [[str(r["seed"]),
             f"{r['random_split']['average_precision']:.4f} ({r['random_split']['of_ideal']:.3f})",
             f"{r['out_of_time']['average_precision']:.4f} ({r['out_of_time']['of_ideal']:.3f})",
             f"{gap:+.3f}", f"{r['out_of_time']['baselines']['logistic_regression']:.4f}",
             f"{r['out_of_time']['baselines']['default_lightgbm']:.4f}"] for r, gap in zip(done, gaps(result))]
    if len(done) > 1:
        values = gaps(result)
        rows.append(["mean", f"{mean(r['random_split']['of_ideal'] for r in done):.3f}",
                     f"{mean(r['out_of_time']['of_ideal'] for r in done):.3f}",
                     f"{mean(values):+.3f} (se {stdev(values) / math.sqrt(len(values)):.3f})", "", ""])
    return "\n".join([about(result), "", table(header, rows, "rrrrrr"), ""])
