"""How much of the ideal scorer's average precision any model can reach on the generated data.

The ideal scorer ranks test customers by their true probability, which includes the intent
the generator never exports (stages/lib/data/synthetic.py), so no model of the exported columns can
match it. This benchmark estimates what such a model can reach: a LightGBM trained on millions
of freshly generated customers (the same generator, other seeds, never the test customers),
with the tree count found by early stopping on another fresh table, scores each run's test
split. Fitted at several sizes, the "ceiling" shows whether more data still moves it.

The ceiling's tables are single exports (one row per customer): its config sets
generate.snapshots 1 and data.time_column empty for the runs too, so each run's test customers are
rows of that kind (the dated default's ceiling is not measured here).

For each `base.seed`, the whole pipeline runs with the committed params.yaml (that seed
changes the data, the split, the folds and the search), so each row pairs the pipeline's test
average precision with the ideal scorer's and the ceiling's on the same test customers.

Options (benchmarks/configs.yaml): `seeds` (base.seed of each run), `ceiling_rows` (training rows of
each ceiling model; empty: the pipeline beside the ideal scorer only, as a search-space comparison
needs), `threads` (LightGBM threads of the ceiling fits), `params` (dotted keys set in every run on top
of the committed params; `data.categorical_columns` there is the ceiling's too).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import numpy as np
import pandas as pd
import yaml
from lightgbm import LGBMClassifier, early_stopping
from sklearn.metrics import average_precision_score

from benchmarks.markdown import about, table
from benchmarks.pipeline import benchmark_size, dvc_paths
from benchmarks.results import ROOT
from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.synthetic import ID_COLUMN, PROBABILITY_COLUMN, TARGET_COLUMN, generate_customers

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


def summary(result: dict) -> str:
    figures = result["figures"]
    sizes = figures["ceiling_rows"]
    done = [r for r in figures["runs"] if r["completed"] and ("ceiling" in r or not sizes)]
    of_ceiling = ["pipeline of ceiling"] if sizes else []
    header = ["`base.seed`", "test buyers", "ideal AP", "pipeline AP", "of ideal",
              *[f"ceiling {n:,} AP (of ideal)" for n in sizes], *of_ceiling, "ships (LightGBM - LR, se)",
              "edges"]
    rows = []
    for r in done:
        ceilings = [r["ceiling"][str(n)] for n in sizes]
        rows.append([str(r["seed"]), str(r["test_buyers"]), f"{r['ideal']:.4f}", f"{r['pipeline']:.4f}",
                     f"{r['pipeline'] / r['ideal']:.3f}",
                     *[f"{c:.4f} ({c / r['ideal']:.3f})" for c in ceilings],
                     *([f"{r['pipeline'] / ceilings[-1]:.3f}"] if sizes else []), shipped(r),
                     ", ".join(f"{k} {v}" for k, v in r["edges"].items())])
    if len(done) > 1:
        def spread(values: list[float]) -> str:
            return (f"{mean(values):.3f} (se {stdev(values) / len(values) ** 0.5:.3f}, sd {stdev(values):.3f}, "
                    f"{min(values):.3f}-{max(values):.3f})")
        rows.append(["mean", "", "", "", spread([r["pipeline"] / r["ideal"] for r in done]),
                     *[spread([r["ceiling"][str(n)] / r["ideal"] for r in done]) for n in sizes],
                     *([spread([r["pipeline"] / r["ceiling"][str(sizes[-1])] for r in done])] if sizes else []),
                     "", ""])
    fits = ", ".join(f"{n:,} rows: {figures['ceiling_trees'][str(n)]} trees" for n in sizes
                     if str(n) in figures.get("ceiling_trees", {}))
    fitted = [f"Ceiling models ({fits}).", ""] if sizes else []
    return "\n".join([about(result), "", *fitted,
                      table(header, rows, "rrrrr" + "r" * (len(sizes) + len(of_ceiling)) + "ll"), ""])


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    # The runs' own generate params (the options may make the table a single undated export).
    overrides = {key.split(".", 1)[1]: value for key, value in (options.get("params") or {}).items()
                 if key.startswith("generate.")}
    generate = GenerateParams(**{**committed["generate"], **overrides})
    categorical = (options.get("params") or {}).get("data.categorical_columns",
                                                    committed["data"]["categorical_columns"])
    figures.update({"generate": generate.model_dump(), "ceiling_model": CEILING_MODEL,
                    "ceiling_rows": sorted(options["ceiling_rows"]), "ceiling_trees": {}, "runs": []})
    runs, workdirs = figures["runs"], []
    try:
        # The pipeline runs first, as child processes: the ceiling's fits in this process would
        # otherwise count in their measured memory.
        for seed in options["seeds"]:
            record, workdir = run_seed(seed, dict(options.get("params") or {}), logs)
            runs.append(record)
            workdirs.append(workdir)
            save()
        tests = {r["seed"]: held_out_customers(w, r) for r, w in zip(runs, workdirs) if r["completed"]}
        for rows in figures["ceiling_rows"]:
            model, levels = fit_ceiling(rows, generate, categorical, options.get("threads", 2))
            figures["ceiling_trees"][str(rows)] = model.best_iteration_
            print(f"[ceiling] {rows:,} rows: {model.best_iteration_} trees", file=sys.stderr)
            for record in runs:
                if record["completed"]:
                    test = tests[record["seed"]]
                    scores = model.predict_proba(model_features(test, levels))[:, 1]
                    record.setdefault("ceiling", {})[str(rows)] = float(average_precision_score(test[TARGET_COLUMN],
                                                                                                scores))
            save()
    finally:
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
    return all(r["completed"] for r in runs)
