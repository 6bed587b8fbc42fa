"""The models a user would pick instead, fitted on the same training split and scored on the same test rows.

They are comparisons, not models to ship: `evaluate` records each one's ranking
and its precision and recall at the same contact budget as the model, in
metrics.json's `baselines`, and the pull-request report says when one beats the model.

- `logistic_regression`: stages.lib.modeling.linear's logistic regression with C=1 (the
  shipped logistic regression has its C chosen by cross-validation).
- `default_lightgbm`: LightGBM with its own defaults (100 trees, 31 leaves): no
  tuning, no resampling, no calibration.

Both see the processed training split only, never the resampled one, and are
scored on the test split alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from lightgbm import LGBMClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from stages.lib.engines.base import Engine
from stages.lib.evaluation.comparison import compare
from stages.lib.evaluation.metrics import paired_bootstrap_se, top_of_list_metrics
from stages.lib.modeling.linear import logistic_regression

BASELINES = ("logistic_regression", "default_lightgbm")


def default_lightgbm(seed: int, threads: int) -> LGBMClassifier:
    return LGBMClassifier(random_state=seed, n_jobs=threads, deterministic=True, force_col_wise=True, verbose=-1)


def _fitted(name: str, features: pd.DataFrame, y: np.ndarray, seed: int, threads: int):
    if name == "logistic_regression":
        return logistic_regression(features).fit(features, y)
    return default_lightgbm(seed, threads).fit(features, y)


def fit_baselines(engine: Engine, features: pd.DataFrame, y: np.ndarray, seed: int,
                  threads: int | str) -> dict[str, object]:
    """Each baseline fitted on the training rows given (the processed training split), side by side, with
    `threads` (model.threads) LightGBM threads."""
    threads = engine.fit_threads(threads, len(BASELINES))
    with engine.parallel(len(BASELINES)) as n_jobs:
        fitted = Parallel(n_jobs=n_jobs)(
            delayed(_fitted)(name, features, y, seed, threads) for name in BASELINES)
    return dict(zip(BASELINES, fitted))


def baseline_metrics(scores: dict[str, np.ndarray], y: np.ndarray, top_fraction: float, model_ranking: np.ndarray,
                     seed: int) -> dict:
    """Each baseline's ranking numbers on the test rows, its precision and recall at the contact budget, and
    the standard error of the model's average precision minus its own (paired bootstrap of the test rows)."""
    results = {}
    for name, score in scores.items():
        top = top_of_list_metrics(y, score, top_fraction)
        results[name] = {
            "average_precision": float(average_precision_score(y, score)),
            "roc_auc": float(roc_auc_score(y, score)),
            "precision_at_k": top["precision_at_k"],
            "capture_rate_at_top": top["capture_rate_at_top"],
            "average_precision_difference_se": paired_bootstrap_se(y, model_ranking, score, seed),
        }
    return results


def baselines_note(metrics: dict) -> str | None:
    """One line naming every baseline the model does not clearly beat (stages.lib.evaluation.comparison's
    rule): one that ranks better, or one within the noise; None when the model is clearly better than each."""
    model = metrics["average_precision"]
    measured = {name: compare(model, numbers["average_precision"], numbers.get("average_precision_difference_se"))
                for name, numbers in metrics.get("baselines", {}).items()}
    named = [f"{name} {metrics['baselines'][name]['average_precision']:.4f} "
             f"({'ranks better' if m.verdict == 'worse' else 'no clear difference'}; model minus it {m.evidence()})"
             for name, m in sorted(measured.items(), key=lambda item: item[1].difference) if m.verdict != "better"]
    if not named:
        return None
    return (f"note: on the test split the model (average precision {model:.4f}) is not clearly better than "
            f"{'; '.join(named)}; metrics.json's baselines have the rest")

