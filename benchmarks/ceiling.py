"""How much of the ideal scorer's average precision any model can reach on the generated data.

The ideal scorer ranks test customers by their true probability, which includes the intent
the generator never exports (stages/lib/synthetic.py), so no model of the exported columns can
match it. This benchmark estimates what such a model can reach: a LightGBM trained on millions
of freshly generated customers (the same generator, other seeds, never the test customers),
with the tree count found by early stopping on another fresh table, scores each run's test
split. Fitted at several sizes, the "ceiling" shows whether more data still moves it.

For each `base.seed`, the whole pipeline runs with the committed params.yaml (that seed
changes the data, the split, the folds and the search), so each row pairs the pipeline's test
average precision with the ideal scorer's and the ceiling's on the same test customers.

    python -m benchmarks.ceiling --seeds 42 0 1 2 3 4 5 6 7 8 9 --ceiling-rows 500000 1000000 2000000 4000000

Writes OUTPUT.json and OUTPUT.md (default benchmarks/experiments/ceiling-60k) and prints the
table. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import numpy as np
import pandas as pd
import yaml
from lightgbm import LGBMClassifier, early_stopping
from sklearn.metrics import average_precision_score

from benchmarks.markdown import table
from benchmarks.measure import machine
from benchmarks.run import benchmark_size, dvc_paths, parse_overrides
from stages.lib.params import GenerateParams
from stages.lib.synthetic import ID_COLUMN, PROBABILITY_COLUMN, TARGET_COLUMN, generate_customers
from tests.helpers import REPO_ROOT

# Seeds of the ceiling's own tables: far from any base.seed a run uses.
CEILING_TRAIN_SEED = 10_000_019
CEILING_STOP_SEED = 10_000_079
CEILING_STOP_ROWS = 400_000
# Settings for millions of rows, not searched: early stopping picks the tree count.
CEILING_MODEL = dict(learning_rate=0.03, num_leaves=15, min_child_samples=200, colsample_bytree=0.7,
                     n_estimators=5000, deterministic=True, force_col_wise=True, verbose=-1)


def model_features(table: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """The exported columns, categoricals with the generator's fixed levels."""
    features = table.drop(columns=[c for c in (ID_COLUMN, TARGET_COLUMN, PROBABILITY_COLUMN) if c in table])
    return features.assign(**{c: pd.Categorical(features[c], categories=levels[c]) for c in levels})


def fit_ceiling(rows: int, generate: GenerateParams, categorical: list[str], threads: int
                ) -> tuple[LGBMClassifier, dict[str, list[str]]]:
    train, _ = generate_customers(generate.model_copy(update={"rows": rows}), CEILING_TRAIN_SEED)
    stop, _ = generate_customers(generate.model_copy(update={"rows": CEILING_STOP_ROWS}), CEILING_STOP_SEED)
    levels = {c: sorted(pd.concat([train[c], stop[c]]).dropna().unique()) for c in categorical}
    model = LGBMClassifier(**CEILING_MODEL, n_jobs=threads, random_state=CEILING_TRAIN_SEED)
    model.fit(model_features(train, levels), train[TARGET_COLUMN],
              eval_X=model_features(stop, levels), eval_y=stop[TARGET_COLUMN], eval_metric="average_precision",
              callbacks=[early_stopping(100, verbose=False)])
    return model, levels


def held_out_customers(workdir: Path, record: dict[str, Any]) -> pd.DataFrame:
    """The run's test split as exported (raw columns), with labels and true probabilities."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    ids = pd.read_parquet(workdir / dvc_paths(workdir)["test"], columns=[ID_COLUMN])
    raw = pd.read_csv(workdir / params["data"]["path"])
    truth = pd.read_parquet(workdir / "data/raw/true_probability.parquet")
    test = ids.merge(raw, on=ID_COLUMN, validate="one_to_one").merge(truth, on=ID_COLUMN, validate="one_to_one")
    ideal = average_precision_score(test[TARGET_COLUMN], test[PROBABILITY_COLUMN])
    if not np.isclose(ideal, record["ideal"]):
        raise SystemExit(f"seed {record['seed']}: the test customers read here are not the run's")
    return test


def run_seed(seed: int, overrides: dict[str, Any], log_dir: Path) -> tuple[dict[str, Any], Path]:
    run = benchmark_size(f"seed {seed}", {**overrides, "base.seed": seed}, keep=True, score_rows=None,
                         log_dir=log_dir)
    workdir = Path(run.pop("workdir"))
    if not run.get("completed"):
        return {"seed": seed, "completed": False, "failed_stage": run.get("failed_stage")}, workdir
    quality = run["quality"]
    tune = json.loads((workdir / "metrics" / "tune.json").read_text())
    record = {
        "seed": seed, "completed": True, "rows": run["rows"], "test_rows": quality["test_rows"],
        "test_buyers": quality["test_buyers"], "ideal": quality["ideal_average_precision"],
        "pipeline": quality["average_precision"],
        "baselines": {name: values["average_precision"] for name, values in quality["baselines"].items()
                      if "average_precision" in values},  # FLAML is not run here
        "family": tune["family"], "comparison": tune.get("comparison"),
        "best_params": tune.get("lightgbm", {}).get("best_params"), "edges": tune.get("lightgbm", {}).get("edges", {}),
    }
    return record, workdir


def shipped(record: dict) -> str:
    """The family tune shipped, and the comparison it was chosen by (model.family auto)."""
    family = record.get("family", "lightgbm")
    comparison = record.get("comparison")
    if not comparison:
        return family
    return f"{family} ({comparison['difference']:+.4f}, {comparison['standard_error']:.4f})"


def markdown(results: dict) -> str:
    m = results["machine"]
    sizes = results["ceiling_rows"]
    done = [r for r in results["runs"] if r["completed"]]
    header = ["`base.seed`", "test buyers", "ideal AP", "pipeline AP", "of ideal",
              *[f"ceiling {n:,} AP (of ideal)" for n in sizes], "pipeline of ceiling", "ships (LightGBM - LR, se)",
              "edges"]
    rows = []
    for r in done:
        ceilings = [r["ceiling"][str(n)] for n in sizes]
        rows.append([str(r["seed"]), str(r["test_buyers"]), f"{r['ideal']:.4f}", f"{r['pipeline']:.4f}",
                     f"{r['pipeline'] / r['ideal']:.3f}",
                     *[f"{c:.4f} ({c / r['ideal']:.3f})" for c in ceilings],
                     f"{r['pipeline'] / ceilings[-1]:.3f}", shipped(r),
                     ", ".join(f"{k} {v}" for k, v in r["edges"].items())])
    if len(done) > 1:
        def spread(values: list[float]) -> str:
            return f"{mean(values):.3f} (sd {stdev(values):.3f}, {min(values):.3f}-{max(values):.3f})"
        rows.append(["mean", "", "", "", spread([r["pipeline"] / r["ideal"] for r in done]),
                     *[spread([r["ceiling"][str(n)] / r["ideal"] for r in done]) for n in sizes],
                     spread([r["pipeline"] / r["ceiling"][str(sizes[-1])] for r in done]), "", ""])
    fits = ", ".join(f"{n:,} rows: {results['ceiling_trees'][str(n)]} trees" for n in sizes)
    return "\n".join([
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, LightGBM {m['lightgbm']}.",
        "", f"    {results['command']}", "", f"Ceiling models ({fits}).", "",
        table(header, rows, "rrrrr" + "r" * len(sizes) + "rll"), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, *range(10)], help="base.seed of each run")
    parser.add_argument("--ceiling-rows", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000, 4_000_000],
                        help="training rows of each ceiling model")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads of the ceiling fits")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="params of every run other than the committed ones, e.g. --set tune.n_iter=40")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "experiments" / "ceiling-60k"),
                        help="writes OUTPUT.json and OUTPUT.md")
    args = parser.parse_args(argv)
    output = Path(args.output)
    log_dir = output.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    generate = GenerateParams(**committed["generate"])

    runs, workdirs = [], []
    try:
        # The pipeline runs first, as child processes: the ceiling's fits in this process would
        # otherwise count in their measured memory.
        for seed in args.seeds:
            record, workdir = run_seed(seed, parse_overrides(args.set), log_dir)
            runs.append(record)
            workdirs.append(workdir)
        tests = {r["seed"]: held_out_customers(w, r) for r, w in zip(runs, workdirs) if r["completed"]}
        trees = {}
        for rows in sorted(args.ceiling_rows):
            model, levels = fit_ceiling(rows, generate, committed["data"]["categorical_columns"], args.threads)
            trees[str(rows)] = model.best_iteration_
            print(f"[ceiling] {rows:,} rows: {model.best_iteration_} trees", file=sys.stderr)
            for record in runs:
                if record["completed"]:
                    test = tests[record["seed"]]
                    scores = model.predict_proba(model_features(test, levels))[:, 1]
                    record.setdefault("ceiling", {})[str(rows)] = float(average_precision_score(test[TARGET_COLUMN],
                                                                                                scores))
    finally:
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m benchmarks.ceiling " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = {"machine": machine(), "command": command, "generate": generate.model_dump(),
               "ceiling_model": CEILING_MODEL, "ceiling_rows": sorted(args.ceiling_rows),
               "ceiling_trees": trees, "runs": runs}
    output.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0 if all(r["completed"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
