"""The decision threshold (`will_buy`) for the objective in params.yaml, on calibrated out-of-fold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from stages.lib.core.errors import DataError
from stages.lib.core.params_model import ThresholdParams
from stages.lib.evaluation.metrics import profit, ranked, top_count
from stages.lib.modeling.ranking import Threshold, best_first


def threshold_curve(y: np.ndarray, scores: np.ndarray, objective: ThresholdParams | None = None) -> pd.DataFrame:
    """Precision, recall and F1 of `score >= threshold` for every distinct threshold, ascending; with
    objective profit, also the profit of contacting those customers (metrics.profit)."""
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    curve = pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall, "f1": f1})
    if objective is not None and objective.objective == "profit":
        order, labels, ends = ranked(y, scores)
        # Counts at each distinct score, highest first; reversed to the curve's ascending thresholds.
        at = np.searchsorted(np.asarray(scores, dtype=np.float64)[order][ends][::-1], thresholds)
        buyers, contacts = np.cumsum(labels)[ends][::-1][at], (ends + 1)[::-1][at]
        curve["profit"] = profit(buyers, contacts, objective.buyer_value, objective.contact_cost)
    return curve


def choose_threshold(y: np.ndarray, probability: np.ndarray, raw: np.ndarray,
                     objective: ThresholdParams) -> Threshold:
    """The threshold the objective asks for, on calibrated probabilities.

    A contact budget (top_fraction) flags exactly its share of the rows: ties in
    probability at the cut are broken by the raw score, as the ranking is.
    """
    if objective.objective == "top_fraction":
        last = best_first(probability, raw)[top_count(objective.top_fraction, len(probability)) - 1]
        return Threshold(float(probability[last]), float(raw[last]))
    curve = threshold_curve(y, probability, objective)
    if objective.objective == "f1":
        return Threshold(float(curve["threshold"].iloc[int(np.argmax(curve["f1"].to_numpy()))]))
    if objective.objective == "profit":
        # The most profitable threshold; of equally profitable ones, the highest (the fewest contacts).
        best = len(curve) - 1 - int(np.argmax(curve["profit"].to_numpy()[::-1]))
        return Threshold(float(curve["threshold"].iloc[best]))
    # min_precision: the lowest threshold whose precision is high enough has the best recall.
    reaching = curve[curve["precision"] >= objective.min_precision]
    if reaching.empty:
        raise DataError(
            f"no threshold reaches precision {objective.min_precision} on out-of-fold predictions "
            f"(the best is {curve['precision'].max():.3f}); lower threshold.min_precision "
            "or use threshold.objective: f1"
        )
    return Threshold(float(reaching["threshold"].iloc[0]))
