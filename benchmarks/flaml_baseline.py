"""FLAML's LightGBM AutoML on the pipeline's processed training split, scored on its test split.

Run by benchmarks/run.py with the FLAML environment's interpreter (benchmarks/requirements.txt),
never with the pipeline's: the pipeline's venv does not have FLAML and must not import it.
Standalone on purpose (no `stages` import): it reads the two parquet files preprocess wrote,
drops the ID columns and the label, and hands FLAML the features exactly as the pipeline's
model sees them (numbers as float32, categoricals as pandas `category`).

    /tmp/flaml-venv/bin/python benchmarks/flaml_baseline.py \
        --train data/processed/train.parquet --test data/processed/test.parquet \
        --id-columns customer_id --budget 60 --seed 42 --output flaml.json

Writes a JSON object: test average_precision and roc_auc, the search's best config,
how many configs it tried, and its wall time; or `"status": "no model"` when no fit
finished within the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

LABEL = "__label__"  # stages/lib/data/schema.py: LABEL
SYNTHETIC = "__synthetic__"  # stages/lib/data/schema.py: SYNTHETIC (only in resampled tables)


def split(path: str, id_columns: list[str]):
    import pandas as pd

    frame = pd.read_parquet(path)
    drop = [c for c in (*id_columns, LABEL, SYNTHETIC) if c in frame.columns]
    return frame.drop(columns=drop), frame[LABEL].to_numpy("int8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="processed training split (preprocess's output)")
    parser.add_argument("--test", required=True, help="processed test split")
    parser.add_argument("--id-columns", nargs="*", default=[], help="data.id_columns: dropped from the features")
    parser.add_argument("--budget", type=float, default=60, help="FLAML time_budget, seconds")
    parser.add_argument("--seed", type=int, default=42, help="base.seed")
    parser.add_argument("--jobs", type=int, default=1, help="FLAML n_jobs (LightGBM threads)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    args = parser.parse_args(argv)

    # As stages.predict does: LightGBM's OpenMP threads sleep at barriers instead of spinning,
    # which matters on 2 cores shared with other work.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import flaml
    from flaml import AutoML
    from sklearn.metrics import average_precision_score, roc_auc_score

    train_x, train_y = split(args.train, args.id_columns)
    test_x, test_y = split(args.test, args.id_columns)
    automl = AutoML()
    start = time.perf_counter()
    automl.fit(train_x, train_y, task="classification", metric="ap", estimator_list=["lgbm"],
               time_budget=args.budget, seed=args.seed, n_jobs=args.jobs, verbose=0)
    search_s = time.perf_counter() - start
    if automl.best_estimator is None:
        # On millions of rows the budget can end before FLAML's first fit does: a result, not a crash.
        Path(args.output).write_text(json.dumps({
            "status": "no model", "reason": f"no fit finished within the {args.budget:g} s budget",
            "flaml": flaml.__version__, "time_budget_s": args.budget, "train_rows": int(len(train_y)),
            "configs_tried": len(automl.config_history), "search_s": round(search_s, 3)}, indent=2) + "\n")
        return 0
    scores = automl.predict_proba(test_x)[:, 1]
    result = {
        "flaml": flaml.__version__,
        "time_budget_s": args.budget,
        "n_jobs": args.jobs,
        "seed": args.seed,
        "train_rows": int(len(train_y)),
        "test_rows": int(len(test_y)),
        "average_precision": float(average_precision_score(test_y, scores)),
        "roc_auc": float(roc_auc_score(test_y, scores)),
        # FLAML's own validation score: 1 - average precision on its holdout or CV folds.
        "validation_average_precision": float(1 - automl.best_loss),
        "best_config": {k: (v.item() if hasattr(v, "item") else v) for k, v in automl.best_config.items()},
        "configs_tried": len(automl.config_history),
        "search_s": round(search_s, 3),
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
