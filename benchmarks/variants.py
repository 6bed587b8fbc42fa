"""Changes to the final model that were measured against the committed one and not adopted.

The project is copied (benchmarks/workdir.py) with the config's `params` and `dvc repro train` tunes the
model of that table once. For each seed: generate its 60,000 customers, preprocess them as the pipeline
does (same split), train the final model with those tuned params (the copy's models/best_params.json, not
re-tuned per seed) and score the test split; then the same with one change at a time:

- `ratios`: two derived columns, returns per order and spend per order (the generator's truth
  uses the return ratio; a tree needs many splits to approximate a ratio);
- `bagging`: five models on 80 % row samples with different seeds, scores averaged;
- `monotone`: basket adds, checkout steps, minutes on site and orders constrained to raise the score;
- `blend`: the model's rank plus half the logistic regression baseline's rank;
- `all`: ratios, bagging and blend together.

Paired by seed (the same customers, split and test set for every variant), so the differences
are far less noisy than test average precision itself.

Options (benchmarks/configs.yaml): `seeds`; `params`, edits to the committed params (a LightGBM model of a
table with the columns below: the generated single export).

"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from benchmarks.markdown import about, table
from benchmarks.workdir import reproduced_copy
from stages.lib.core.cores import local_workers, usable_cores
from stages.lib.core.files import read_json
from stages.lib.core.params import load_params
from stages.lib.data.schema import SNAPSHOT, split_features
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import generate_customers, true_probabilities_of
from stages.lib.engines.local.engine import LocalEngine
from stages.lib.evaluation.baselines import fit_baselines
from stages.lib.modeling import estimators

VARIANTS = ("committed", "ratios", "bagging", "monotone", "blend", "all")
BAGS = 5
RAISING = ("basket_adds_30d", "saw_checkout", "checked_delivery_details", "minutes_on_site", "orders_12m")


def with_ratios(features: pd.DataFrame) -> pd.DataFrame:
    orders = features["orders_12m"].where(features["orders_12m"] > 0)
    return features.assign(returns_per_order=features["returns_12m"] / orders,
                           spend_per_order=features["spend_12m"] / orders)


def variant_scores(name: str, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, params, best: dict
                   ) -> np.ndarray:
    def fitted(features: pd.DataFrame, extra: dict | None = None, seed_shift: int = 0):
        recipe = estimators.Recipe(params.model, params.resample, params.base.seed + seed_shift)
        classifier = recipe.classifier(usable_cores(), {**best, **(extra or {})})
        return classifier.fit(features, y)

    if name == "ratios":
        return fitted(with_ratios(train)).predict_proba(with_ratios(test))[:, 1]
    if name in ("bagging", "all"):
        derived = with_ratios if name == "all" else (lambda features: features)
        bag = {"subsample": 0.8, "subsample_freq": 1}
        scores = np.mean([fitted(derived(train), bag, i).predict_proba(derived(test))[:, 1] for i in range(BAGS)],
                         axis=0)
        # The logistic regression of the blend reads the exported columns only, as the baseline does.
        return scores if name == "bagging" else blended(scores, train, y, test, params)
    if name == "monotone":
        constraints = [1 if c in RAISING else 0 for c in train.columns]
        return fitted(train, {"monotone_constraints": constraints,
                              "monotone_constraints_method": "advanced"}).predict_proba(test)[:, 1]
    scores = fitted(train).predict_proba(test)[:, 1]
    return blended(scores, train, y, test, params) if name == "blend" else scores


def blended(scores: np.ndarray, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, params) -> np.ndarray:
    linear = fit_baselines(LocalEngine(local_workers()), train, y, params.base.seed,
                           params.model.threads)["logistic_regression"]
    return rankdata(scores) + 0.5 * rankdata(linear.predict_proba(test)[:, 1])


def tuned(options: dict[str, Any], figures: dict[str, Any], logs: Path) -> tuple[Any, dict | None]:
    """(the params of the config, the LightGBM params the pipeline tuned on its table; None when that failed)."""
    workdir = Path(tempfile.mkdtemp(prefix="propensity-bench-variants-"))
    try:
        if not reproduced_copy(workdir, options.get("params", {}), logs / "variants.log", "train"):
            figures["failed"] = f"dvc repro train failed, see {logs / 'variants.log'}"
            return None, None
        base, best = load_params(workdir / "params.yaml"), read_json(workdir / "models" / "best_params.json")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if best["family"] != "lightgbm":
        figures["failed"] = f"the pipeline chose {best['family']}; the variants change a LightGBM model"
        return None, None
    return base, best["params"]


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    warnings.filterwarnings("ignore")
    base, best = tuned(options, figures, logs)
    if best is None:
        return False
    figures["best_params"] = best
    records = figures.setdefault("runs", [])
    for seed in options["seeds"]:
        params = base.model_copy(update={"base": base.base.model_copy(update={"seed": seed})})
        customers, truth = generate_customers(params.generate, seed)
        train, test, _ = preprocess_customers(LocalEngine(local_workers()), customers, params.data,
                                              params.preprocess, seed)
        features, y = split_features(train, params.data.id_columns)
        test_features, test_y = split_features(test, params.data.id_columns)
        dates = test[SNAPSHOT].to_numpy() if SNAPSHOT in test.columns else None
        ideal = average_precision_score(test_y, true_probabilities_of(test, truth, params.data.id_columns, dates))
        record = {"seed": seed, "ideal": round(float(ideal), 6)}
        for name in VARIANTS:
            scores = variant_scores(name, features, y, test_features, params, best)
            record[name] = round(float(average_precision_score(test_y, scores)), 6)
        records.append(record)
        save()
    return True


def summary(result: dict[str, Any]) -> str:
    records = result["figures"]["runs"]
    rows = []
    for name in VARIANTS:
        ratios = [r[name] / r["ideal"] for r in records]
        gains = [(r[name] - r["committed"]) / r["ideal"] for r in records]
        wins = sum(g > 0 for g in gains)
        spread = f"{mean(gains):+.4f} (sd {stdev(gains):.4f})" if len(gains) > 1 else f"{mean(gains):+.4f}"
        rows.append([name, f"{mean(ratios):.4f}", f"{min(ratios):.3f}-{max(ratios):.3f}",
                     "" if name == "committed" else spread, "" if name == "committed" else f"{wins} of {len(gains)}"])
    return about(result) + "\n\n" + table(
        ["variant", "test AP of ideal, mean", "range", "change against committed, of ideal", "better on"], rows,
        "lrrrr") + "\n"
