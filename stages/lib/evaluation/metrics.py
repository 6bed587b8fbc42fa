"""What the pipeline measures: decisions at a threshold, the top of the ranked list, ranking and probabilities.

`calibrate` reads the out-of-fold numbers and `evaluate` the test-split ones
from the same functions, so a precision means the same thing in both files.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    log_loss,
    matthews_corrcoef,
    roc_auc_score,
)

from stages.lib.core.errors import DataError
from stages.lib.core.exact import round_significant_digits
from stages.lib.core.params_model import EvaluateParams
from stages.lib.modeling.ranking import Threshold, ranking_scores


def top_count(fraction: float, rows: int) -> int:
    """How many of `rows` customers a contact budget of `fraction` flags (at least one)."""
    # Round off float noise first: 0.07 * 100 is 7.000000000000001, and its ceiling 8.
    return max(1, math.ceil(round(fraction * rows, 9)))


def decision_metrics(y: np.ndarray, flagged: np.ndarray, suffix: str = "") -> dict:
    """Confusion counts, precision, recall, F1 and accuracy of a yes/no decision."""
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    values = {"precision": precision, "recall": recall, "f1": f1, "accuracy": (tp + tn) / len(y),
              "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return {f"{key}{suffix}": value for key, value in values.items()}


def top_of_list_metrics(y: np.ndarray, scores: np.ndarray, fraction: float) -> dict:
    """Precision, lift and capture rate when contacting the top `fraction` of customers by `scores`."""
    k = top_count(fraction, len(y))
    top = np.argsort(-scores, kind="stable")[:k]
    buyers_in_top = int(y[top].sum())
    precision_at_k = buyers_in_top / k
    base_rate = y.mean()
    return {
        "top_fraction": fraction,
        "k": k,
        "precision_at_k": precision_at_k,
        "lift_at_top": precision_at_k / base_rate if base_rate else 0.0,
        "capture_rate_at_top": buyers_in_top / max(int(y.sum()), 1),
    }


def evaluate_scores(y: np.ndarray, probability: np.ndarray, raw: np.ndarray, threshold: Threshold,
                    settings: EvaluateParams, seed: int) -> dict:
    """Every test metric: decisions at the chosen threshold, ranking in the model's order, probabilities."""
    flagged = threshold.flags(probability, raw)
    ranking = ranking_scores(probability, raw)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    # Ranking first: `dvc exp show` and the report list a file's metrics in this order.
    metrics = {
        "average_precision": float(average_precision_score(y, ranking)),
        "average_precision_se": bootstrap_se(y, ranking, seed),
        "roc_auc": float(roc_auc_score(y, ranking)),
        **decision_metrics(y, flagged),
        "threshold": threshold.probability,
        **decision_metrics(y, probability >= 0.5, suffix="_at_0_5"),
        "balanced_accuracy": float(balanced_accuracy_score(y, flagged)),
        "mcc": float(matthews_corrcoef(y, flagged)),
        "brier": float(brier_score_loss(y, probability)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "expected_buyers": float(probability.sum()),
        "actual_buyers": int(y.sum()),
        "test_rows": int(len(y)),
        **top_of_list_metrics(y, ranking, settings.top_fraction),
        # Always answering "no": what accuracy alone is worth on this problem.
        "baseline": {"accuracy": float(1 - y.mean()), "precision": 0.0, "recall": 0.0, "f1": 0.0},
    }
    return metrics


def ideal_scorer_metrics(y: np.ndarray, probability: np.ndarray, raw: np.ndarray,
                         true_probability: np.ndarray) -> dict:
    """The true probabilities scored like the model, and the model's share of each."""
    ideal = {
        "roc_auc": float(roc_auc_score(y, true_probability)),
        "average_precision": float(average_precision_score(y, true_probability)),
        "brier": float(brier_score_loss(y, true_probability)),
    }
    ranking = ranking_scores(probability, raw)
    model = {"roc_auc": roc_auc_score(y, ranking), "average_precision": average_precision_score(y, ranking),
             "brier": brier_score_loss(y, probability)}
    ratios = {f"{key}_ratio": float(model[key] / ideal[key]) for key in ideal}
    return {**ideal, **ratios}


def check_test_labels(y: np.ndarray, source: str) -> None:
    """Precision, recall and every ranking metric need buyers and non-buyers in the test split."""
    buyers = int(np.sum(y == 1))
    if buyers == 0 or buyers == len(y):
        which = "no buyer" if buyers == 0 else "only buyer"
        raise DataError(
            f"{source}: the test split has {which} rows ({len(y):,} rows); nothing can be measured. "
            "Use more data or a larger preprocess.test_size, then run `dvc repro`"
        )


# Resamples of the paired bootstrap; enough for a standard error to about 5 % of itself.
BOOTSTRAP_RESAMPLES = 200


def ranked(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows in descending score order, their labels, and the last position of each run of equal scores."""
    order = np.argsort(-score, kind="stable")
    ordered = score[order]
    return order, y[order].astype(np.float64), np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])


def profit(buyers_reached, contacts, buyer_value: float, contact_cost: float):
    """What a campaign earns: the buyers it reaches at buyer_value each, less contact_cost per contact."""
    return buyer_value * np.asarray(buyers_reached, dtype=np.float64) - contact_cost * np.asarray(contacts)


def profit_metrics(y: np.ndarray, probability: np.ndarray, flagged: np.ndarray, buyer_value: float,
                   contact_cost: float) -> dict:
    """Expected profit of contacting the flagged customers (their calibrated probabilities, before the
    outcome is known) and the profit realised (the buyers among them)."""
    contacts = int(flagged.sum())
    return {"expected": float(profit(probability[flagged].sum(), contacts, buyer_value, contact_cost)),
            "realised": float(profit(int(y[flagged].sum()), contacts, buyer_value, contact_cost)),
            "contacts": contacts}


def profit_report(y: np.ndarray, probability: np.ndarray, flagged: np.ndarray, buyer_value: float,
                  contact_cost: float) -> dict:
    """metrics.json's `profit`: the costs, profit_metrics at the chosen threshold and (`*_at_0_5`) at 0.5."""
    at_half = profit_metrics(y, probability, probability >= 0.5, buyer_value, contact_cost)
    return {"buyer_value": buyer_value, "contact_cost": contact_cost,
            **profit_metrics(y, probability, flagged, buyer_value, contact_cost),
            **{f"{name}_at_0_5": value for name, value in at_half.items()}}


def weighted_average_precision(order: np.ndarray, y: np.ndarray, ends: np.ndarray, weights: np.ndarray) -> float:
    """scikit-learn's average precision with each row counted `weights` times (the rest from `ranked`)."""
    weights = weights[order]
    tp = np.cumsum(weights * y)[ends]
    fp = np.cumsum(weights * (1 - y))[ends]
    if tp[-1] == 0:
        return math.nan
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    return float(np.sum(np.diff(tp, prepend=0.0) / tp[-1] * precision))


def _bootstrap_average_precisions(y: np.ndarray, scores: list[np.ndarray], seed: int, resamples: int) -> np.ndarray:
    """Each score's average precision on `resamples` Poisson(1) reweightings of the same customers (one row
    each; a resample without a buyer is left out)."""
    rng = np.random.default_rng(seed)
    orders = [ranked(y, score) for score in scores]
    rows = []
    for _ in range(resamples):
        weights = rng.poisson(1.0, len(y)).astype(np.float64)
        first = weighted_average_precision(*orders[0], weights)
        if not math.isnan(first):
            rows.append([first] + [weighted_average_precision(*order, weights) for order in orders[1:]])
    return np.array(rows).reshape(-1, len(scores))


def _spread(values: np.ndarray) -> float:
    # Rounded to 4 significant digits: it is a measure of noise.
    return round_significant_digits(float(np.std(values, ddof=1)), 4) if len(values) > 1 else math.nan


def paired_bootstrap_se(y: np.ndarray, score: np.ndarray, other: np.ndarray, seed: int,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Standard error of average_precision(score) - average_precision(other) on the same customers.

    A paired (Poisson) bootstrap: each resample weights every customer by a Poisson(1) count, the
    same weights for both scores, so what the two rankings share cancels.
    """
    both = _bootstrap_average_precisions(y, [score, other], seed, resamples)
    return _spread(both[:, 0] - both[:, 1])


def bootstrap_se(y: np.ndarray, score: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """Standard error of average_precision(score) itself, by the same bootstrap: what two runs' test average
    precisions are compared with (stages.lib.evaluation.comparison.combined_standard_error)."""
    return _spread(_bootstrap_average_precisions(y, [score], seed, resamples)[:, 0])
