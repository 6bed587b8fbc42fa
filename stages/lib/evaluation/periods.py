"""The test split of a dated table, snapshot by snapshot: a backtest of the model beside the baselines.

For every test snapshot date, evaluate records in metrics.json's `periods` the
rows and buyers, the model's and each baseline's average precision, the model's
precision and recall at the chosen threshold, and each feature's drift (PSI) of
that date against the training split; and writes the backtest plot
(`backtest.json`: average precision by snapshot date, model beside baselines).
An undated test split is one point of the backtest, "test split".
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from stages.lib.data import drift
from stages.lib.data.dates import date_label
from stages.lib.evaluation.metrics import decision_metrics
from stages.lib.modeling.ranking import Threshold, ranking_scores

UNDATED = "test split"


def _average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    return float(average_precision_score(y, score)) if 0 < y.sum() < len(y) else None


def period_metrics(dates: np.ndarray, y: np.ndarray, probability: np.ndarray, raw: np.ndarray, threshold: Threshold,
                   baselines: dict[str, np.ndarray], reference: drift.DriftReference,
                   drift_by_date: dict[int, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Each test snapshot date's numbers, by its ISO date (average precision None on a date without both
    classes)."""
    periods = {}
    keys = np.asarray(dates, dtype="datetime64[ns]").astype(np.int64)
    for date in np.unique(keys):
        rows = keys == date
        decision = decision_metrics(y[rows], threshold.flags(probability[rows], raw[rows]))
        table = drift.drift_table(reference, drift_by_date[int(date)]).set_index("feature")["psi"]
        periods[date_label(int(date))] = {
            "rows": int(rows.sum()),
            "buyers": int(y[rows].sum()),
            "average_precision": _average_precision(y[rows], ranking_scores(probability[rows], raw[rows])),
            "precision": decision["precision"],
            "recall": decision["recall"],
            "baselines": {name: {"average_precision": _average_precision(y[rows], score[rows])}
                          for name, score in baselines.items()},
            "drift_psi": {feature: float(table[feature]) for feature in reference.names()},
        }
    return periods


def backtest_records(metrics: dict) -> list[dict]:
    """The backtest plot's points: average precision by snapshot date (the whole split when undated)."""
    periods = metrics.get("periods") or {UNDATED: {
        "average_precision": metrics["average_precision"],
        "baselines": {name: {"average_precision": numbers["average_precision"]}
                      for name, numbers in metrics.get("baselines", {}).items()}}}
    return [{"snapshot": date, "model": numbers["average_precision"],
             **{name: baseline["average_precision"] for name, baseline in numbers["baselines"].items()}}
            for date, numbers in periods.items()]
