"""Plot data for `dvc plots`: small JSON series of the test split, by file name.

Curves are thinned to a few hundred points so the files stay small in git
whatever the size of the test split; a confusion matrix is four counts, drawn
by the `confusion_counts` template in .dvc/plots. The images are drawn in
`stages.lib.evaluation.images`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.params_model import EvaluateParams
from stages.lib.modeling.ranking import Threshold, ranking_scores

MAX_CURVE_POINTS = 300
POSITIVE_NAME, NEGATIVE_NAME = "buyer", "non-buyer"

# The files `evaluate` writes into its plots directory (dvc.yaml: `paths.test_plots`);
# dvc.yaml's `plots:` section and the pull-request report name them too.
ROC = "roc.json"
PRECISION_RECALL = "precision_recall.json"
CONFUSION = "confusion.json"
CALIBRATION = "calibration.json"
GAINS = "gains.json"
FEATURE_IMPORTANCE = "feature_importance.json"
FEATURE_IMPORTANCE_IMAGE = "feature_importance.png"
CONTRIBUTIONS = "contributions.json"
BACKTEST = "backtest.json"   # stages.lib.evaluation.periods
TEST_PLOT_FILES = (ROC, PRECISION_RECALL, CONFUSION, CALIBRATION, GAINS, FEATURE_IMPORTANCE,
                   FEATURE_IMPORTANCE_IMAGE, CONTRIBUTIONS, BACKTEST)


def downsample_records(curve: pd.DataFrame, order_by: str, max_points: int = MAX_CURVE_POINTS,
                       digits: int = 6) -> list[dict]:
    """At most `max_points` evenly spaced rows of a curve (first and last kept), rounded."""
    curve = curve.sort_values(order_by, kind="stable").reset_index(drop=True)
    if len(curve) > max_points:
        keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
        curve = curve.iloc[keep]
    return curve.round(digits).to_dict(orient="records")


def confusion_records(y: np.ndarray, predicted: np.ndarray) -> list[dict]:
    names = {1: POSITIVE_NAME, 0: NEGATIVE_NAME}
    return [
        {"actual": names[a], "predicted": names[p], "count": int(np.sum((y == a) & (predicted == p)))}
        for a in (1, 0) for p in (1, 0)
    ]


def test_plot_data(y: np.ndarray, probability: np.ndarray, raw: np.ndarray, threshold: Threshold,
                   settings: EvaluateParams) -> dict:
    """The plot series of the test split, by file name: curves in the model's order, calibration on probabilities."""
    # Here, not at the top: the report reads this module's file names and must not load scikit-learn.
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    ranking = ranking_scores(probability, raw)
    fpr, tpr, _ = roc_curve(y, ranking, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(y, ranking)
    observed, predicted = calibration_curve(y, probability, n_bins=settings.calibration_bins, strategy="quantile")
    order = np.argsort(-ranking, kind="stable")
    captured = np.cumsum(y[order]) / max(int(y.sum()), 1)
    contacted = np.arange(1, len(y) + 1) / len(y)
    gains = pd.DataFrame({"contacted": contacted, "captured": captured,
                          "lift": captured / contacted, "random": contacted})
    return {
        ROC: downsample_records(pd.DataFrame({"fpr": fpr, "tpr": tpr}), "fpr"),
        PRECISION_RECALL: downsample_records(pd.DataFrame({"recall": recall, "precision": precision}), "recall"),
        CONFUSION: confusion_records(y, threshold.flags(probability, raw).astype(int)),
        CALIBRATION: [
            {"predicted": round(float(p), 6), "observed": round(float(o), 6), "perfect": round(float(p), 6)}
            for p, o in zip(predicted, observed)
        ],
        GAINS: downsample_records(gains, "contacted"),
    }


def feature_importance(model) -> tuple[pd.DataFrame, str]:
    """What the model leans on most, largest first, and what the number is: LightGBM's total gain per
    feature, or the logistic regression's absolute coefficient per term (a number's per standard
    deviation, a level's against its column's reference level)."""
    # Here, not at the top: the report reads this module's file names and must not load LightGBM.
    from lightgbm import LGBMClassifier

    from stages.lib.modeling.linear import coefficients

    if isinstance(model, LGBMClassifier):
        booster = model.booster_
        table = pd.DataFrame({"feature": booster.feature_name(),
                              "importance": booster.feature_importance(importance_type="gain").round(3)})
        measure = "LightGBM: total gain"
    else:
        terms = coefficients(model).iloc[1:]  # without the intercept
        table = pd.DataFrame({"feature": terms["term"], "importance": terms["coefficient"].abs().round(6)})
        measure = "logistic regression: |standardised coefficient|"
    return table.sort_values(["importance", "feature"], ascending=[False, True]).reset_index(drop=True), measure
