"""Probability calibration and the decision threshold, both fitted on out-of-fold predictions.

A model trained on SMOTE-balanced data returns inflated probabilities, so a
fixed 0.5 cut-off means little. Every training row is scored by a model that
never saw it (cross-validation, resampling inside each fold, the tuned params);
the calibration (the pickled stages.lib.modeling.calibrator) is fitted on those
scores and the threshold chosen for the objective in params.yaml
(stages.lib.modeling.thresholds). The test split is never read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from stages.lib.core.params_model import CalibrationParams, ThresholdParams
from stages.lib.data.dates import date_label
from stages.lib.engines.base import Engine
from stages.lib.evaluation.metrics import decision_metrics, profit_metrics
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import ChosenModel, Recipe
from stages.lib.modeling.folds import Timeline, out_of_fold_scores
from stages.lib.modeling.ranking import ranking_scores
from stages.lib.modeling.thresholds import choose_threshold, threshold_curve


def calibrate_and_choose(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe,
                         calibration: CalibrationParams, objective: ThresholdParams, chosen: ChosenModel,
                         timeline: Timeline | None = None):
    """Return (calibrator, Threshold, report, threshold curve) from out-of-fold predictions of the chosen model;
    for a dated table (`timeline`), of the rows its time-ordered folds validate, and each date's average
    precision (`oof_by_period`, a backtest of the training dates)."""
    raw = out_of_fold_scores(engine, features, y, recipe, calibration.cv_folds, chosen.params, chosen.family,
                             timeline)
    scored = ~np.isnan(raw)
    raw, y = raw[scored], y[scored]
    calibrator = ProbabilityCalibrator(calibration.method).fit(raw, y)
    scores = calibrator.transform(raw)
    threshold = choose_threshold(y, scores, raw, objective)
    decision = decision_metrics(y, threshold.flags(scores, raw))
    ranking = ranking_scores(scores, raw)
    # The threshold itself is in threshold.json and metrics.json; one column of that name in `dvc exp show`.
    report = {
        "objective": objective.objective,
        "calibration": calibration.method,
        "rows": int(len(y)),
        "oof_precision": decision["precision"],
        "oof_recall": decision["recall"],
        "oof_f1": decision["f1"],
        "oof_average_precision": float(average_precision_score(y, ranking)),
        "oof_roc_auc": float(roc_auc_score(y, ranking)),
        "oof_brier_raw": float(brier_score_loss(y, raw)),
        "oof_brier_calibrated": float(brier_score_loss(y, scores)),
    }
    if timeline is not None:
        dates = timeline.dates[scored]
        report["oof_by_period"] = {date_label(date): float(average_precision_score(y[dates == date],
                                                                                    ranking[dates == date]))
                                   for date in np.unique(dates)}
    if objective.objective == "profit":
        report["oof_profit"] = profit_metrics(y, scores, threshold.flags(scores, raw), objective.buyer_value,
                                              objective.contact_cost)
    return calibrator, threshold, report, threshold_curve(y, scores, objective)
