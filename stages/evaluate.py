"""evaluate: score the untouched test split and report what matters for a rare class.

Precision, recall and F1 at the threshold chosen out of fold (and at 0.5, for
comparison), ranking quality (ROC AUC, average precision), probability quality
(Brier, log loss, expected vs. actual buyers), the majority-class baseline, lift
at the top of the list and, for the generated data, the distance to the ideal
scorer that knows every customer's true probability.

    python -m stages.evaluate --test data/processed/test.parquet --model models/model.joblib \
        --calibrator models/calibrator.joblib --threshold models/threshold.json \
        --true-probabilities data/raw/true_probability.parquet \
        --metrics metrics/metrics.json --plots-dir metrics/plots
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score, balanced_accuracy_score, brier_score_loss, log_loss,
    matthews_corrcoef, precision_recall_curve, roc_auc_score, roc_curve,
)

from stages import plots
from stages.calibrate import top_count
from stages.calibration import ProbabilityCalibrator
from stages.cli import run_stage, stage_parser
from stages.config import EvaluateParams, load_params
from stages.errors import DataError
from stages.generate import PROBABILITY_COLUMN
from stages.schema import split_features
from stages.tables import load_object, read_json, read_table, write_json


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
    """Precision, lift and capture rate when contacting the top `fraction` of customers."""
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


def evaluate_scores(y: np.ndarray, scores: np.ndarray, threshold: float, settings: EvaluateParams) -> dict:
    """Every test metric of calibrated scores at the chosen threshold."""
    flagged = scores >= threshold
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)
    metrics = {
        **decision_metrics(y, flagged),
        "threshold": threshold,
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        **decision_metrics(y, scores >= 0.5, suffix="_at_0_5"),
        "balanced_accuracy": float(balanced_accuracy_score(y, flagged)),
        "mcc": float(matthews_corrcoef(y, flagged)),
        "brier": float(brier_score_loss(y, scores)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "expected_buyers": float(scores.sum()),
        "actual_buyers": int(y.sum()),
        "test_rows": int(len(y)),
        **top_of_list_metrics(y, scores, settings.top_fraction),
        # Always answering "no": what accuracy alone is worth on this problem.
        "baseline": {"accuracy": float(1 - y.mean()), "precision": 0.0, "recall": 0.0, "f1": 0.0},
    }
    return metrics


def ideal_scorer_metrics(y: np.ndarray, scores: np.ndarray, true_probability: np.ndarray) -> dict:
    """The true probabilities scored like the model, and the model's share of each."""
    ideal = {
        "roc_auc": float(roc_auc_score(y, true_probability)),
        "average_precision": float(average_precision_score(y, true_probability)),
        "brier": float(brier_score_loss(y, true_probability)),
    }
    model = {"roc_auc": roc_auc_score(y, scores), "average_precision": average_precision_score(y, scores),
             "brier": brier_score_loss(y, scores)}
    ratios = {f"{key}_ratio": float(model[key] / ideal[key]) for key in ideal}
    return {**ideal, **ratios}


def plot_data(y: np.ndarray, scores: np.ndarray, threshold: float, settings: EvaluateParams) -> dict:
    """The plot series of the test split, by file name."""
    fpr, tpr, roc_thresholds = roc_curve(y, scores, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(y, scores)
    observed, predicted = calibration_curve(y, scores, n_bins=settings.calibration_bins, strategy="quantile")
    order = np.argsort(-scores, kind="stable")
    captured = np.cumsum(y[order]) / max(int(y.sum()), 1)
    contacted = np.arange(1, len(y) + 1) / len(y)
    gains = pd.DataFrame({"contacted": contacted, "captured": captured,
                          "lift": captured / contacted, "random": contacted})
    return {
        "roc.json": plots.downsample_records(pd.DataFrame({"fpr": fpr, "tpr": tpr}), "fpr"),
        "precision_recall.json": plots.downsample_records(
            pd.DataFrame({"recall": recall, "precision": precision}), "recall"),
        "confusion.json": plots.confusion_records(y, (scores >= threshold).astype(int)),
        "calibration.json": [
            {"predicted": round(float(p), 6), "observed": round(float(o), 6), "perfect": round(float(p), 6)}
            for p, o in zip(predicted, observed)
        ],
        "gains.json": plots.downsample_records(gains, "contacted"),
    }


def feature_importance(model) -> pd.DataFrame:
    booster = model.booster_
    gain = booster.feature_importance(importance_type="gain")
    return (pd.DataFrame({"feature": booster.feature_name(), "gain": gain.round(3)})
            .sort_values(["gain", "feature"], ascending=[False, True]).reset_index(drop=True))


def check_test_labels(y: np.ndarray, source: str) -> None:
    """Precision, recall and every ranking metric need buyers and non-buyers in the test split."""
    buyers = int(np.sum(y == 1))
    if buyers == 0 or buyers == len(y):
        which = "no buyer" if buyers == 0 else "only buyer"
        raise DataError(
            f"{source}: the test split has {which} rows ({len(y):,} rows); nothing can be measured. "
            "Use more data or a larger preprocess.test_size, then run `dvc repro`"
        )


def score_test_split(test: pd.DataFrame, id_columns: list[str], model, calibrator: ProbabilityCalibrator):
    features, y = split_features(test, id_columns)
    return y, calibrator.transform(model.predict_proba(features)[:, 1])


def true_probabilities_for(test: pd.DataFrame, id_columns: list[str], path: str | None) -> np.ndarray | None:
    """True probabilities of the test rows, or None when the data was not generated."""
    if not path or not Path(path).is_file() or not id_columns:
        return None
    truth = read_table(path)
    key = id_columns[0]
    if key not in truth.columns:
        return None
    joined = test[[key]].merge(truth, on=key, how="left", validate="one_to_one")
    if joined[PROBABILITY_COLUMN].isna().any():
        return None
    return joined[PROBABILITY_COLUMN].to_numpy(float)


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.evaluate")
    parser.add_argument("--test", required=True, help="processed test split")
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibrator", required=True)
    parser.add_argument("--threshold", required=True, help="threshold chosen by calibrate (JSON)")
    parser.add_argument("--true-probabilities", help="generated data's true probabilities; "
                        "used only when data.path is the generated table")
    parser.add_argument("--generated-path", help="path of the generated table (compared with data.path)")
    parser.add_argument("--metrics", required=True, help="output: metrics JSON")
    parser.add_argument("--plots-dir", required=True, help="output directory of plot files")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    test = read_table(args.test)
    check_test_labels(split_features(test, params.data.id_columns, args.test)[1], args.test)
    model = load_object(args.model)
    threshold = float(read_json(args.threshold)["threshold"])
    y, scores = score_test_split(test, params.data.id_columns, model, load_object(args.calibrator))
    metrics = evaluate_scores(y, scores, threshold, params.evaluate)
    is_generated = args.generated_path is not None and Path(params.data.path) == Path(args.generated_path)
    truth = true_probabilities_for(test, params.data.id_columns, args.true_probabilities) if is_generated else None
    if truth is not None:
        metrics["ideal"] = ideal_scorer_metrics(y, scores, truth)

    plots_dir = Path(args.plots_dir)
    for name, records in plot_data(y, scores, threshold, params.evaluate).items():
        write_json(records, plots_dir / name)
    importance = feature_importance(model)
    write_json(importance.to_dict(orient="records"), plots_dir / "feature_importance.json")
    plots.save_figure(plots.feature_importance_figure(importance), plots_dir / "feature_importance.png")
    write_json(metrics, args.metrics)
    print(f"evaluate: precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}, "
          f"F1 {metrics['f1']:.3f} at threshold {threshold:.3f}; average precision "
          f"{metrics['average_precision']:.3f}, ROC AUC {metrics['roc_auc']:.3f}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
