"""calibrate: fit probability calibration and choose the decision threshold, out of fold.

A model trained on SMOTE-balanced data returns inflated probabilities, so a
fixed 0.5 cut-off means little. This stage predicts every training row with a
model that never saw it (cross-validation, resampling inside each fold, the
tuned params), fits the calibration on those out-of-fold predictions, and
chooses the threshold for the objective in params.yaml. The test split is never read.

    python -m stages.calibrate --train data/processed/train.parquet \
        --best-params models/best_params.json --calibrator models/calibrator.joblib \
        --threshold models/threshold.json --metrics metrics/calibrate.json \
        --threshold-curve metrics/plots/threshold.json --threshold-image metrics/plots/threshold.png
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from stages.cli import run_stage, stage_parser
from stages.calibration import ProbabilityCalibrator
from stages.config import Params, ThresholdParams, load_params
from stages.errors import DataError
from stages.modeling import check_fold_sizes, make_pipeline
from stages import plots
from stages.schema import split_features
from stages.tables import read_json, read_table, save_object, write_json
from stages.tune import stratified_sample

def top_count(fraction: float, rows: int) -> int:
    """How many of `rows` customers a contact budget of `fraction` flags (at least one)."""
    # Round off float noise first: 0.07 * 100 is 7.000000000000001, and its ceiling 8.
    return max(1, math.ceil(round(fraction * rows, 9)))


def threshold_curve(y: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Precision, recall and F1 of `score >= threshold` for every distinct threshold, ascending."""
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall, "f1": f1})


def choose_threshold(y: np.ndarray, scores: np.ndarray, objective: ThresholdParams) -> float:
    """The threshold the objective asks for; customers with score >= threshold are flagged."""
    if objective.objective == "top_fraction":
        flagged = top_count(objective.top_fraction, len(scores))
        return float(np.sort(scores)[::-1][flagged - 1])
    curve = threshold_curve(y, scores)
    if objective.objective == "f1":
        return float(curve["threshold"].iloc[int(np.argmax(curve["f1"].to_numpy()))])
    # min_precision: the lowest threshold whose precision is high enough has the best recall.
    reaching = curve[curve["precision"] >= objective.min_precision]
    if reaching.empty:
        raise DataError(
            f"no threshold reaches precision {objective.min_precision} on out-of-fold predictions "
            f"(the best is {curve['precision'].max():.3f}); lower threshold.min_precision "
            "or use threshold.objective: f1"
        )
    return float(reaching["threshold"].iloc[0])


def out_of_fold_scores(features: pd.DataFrame, y: np.ndarray, params: Params,
                       best_params: dict) -> np.ndarray:
    """Every row's score from a model fitted (and resampled) on the other folds."""
    folds = StratifiedKFold(n_splits=params.calibration.cv_folds, shuffle=True, random_state=params.base.seed)
    check_fold_sizes(y, folds, params.resample, "calibration.cv_folds", "calibration rows")
    pipeline = make_pipeline(params.model, params.resample, params.base.seed, best_params)
    return cross_val_predict(pipeline, features, y, cv=folds, method="predict_proba")[:, 1]


def calibrate_and_choose(features: pd.DataFrame, y: np.ndarray, params: Params, best_params: dict):
    """Return (calibrator, threshold, report, threshold curve) from out-of-fold predictions."""
    features, y = stratified_sample(features, y, params.calibration.sample_rows, params.base.seed)
    raw = out_of_fold_scores(features, y, params, best_params)
    calibrator = ProbabilityCalibrator(params.calibration.method).fit(raw, y)
    scores = calibrator.transform(raw)
    threshold = choose_threshold(y, scores, params.threshold)
    flagged = scores >= threshold
    true_positives = int(np.sum(flagged & (y == 1)))
    precision = true_positives / max(int(flagged.sum()), 1)
    recall = true_positives / max(int(y.sum()), 1)
    report = {
        "threshold": threshold,
        "objective": params.threshold.objective,
        "calibration": params.calibration.method,
        "rows": int(len(y)),
        "oof_precision": precision,
        "oof_recall": recall,
        "oof_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "oof_average_precision": float(average_precision_score(y, scores)),
        "oof_roc_auc": float(roc_auc_score(y, scores)),
        "oof_brier_raw": float(brier_score_loss(y, raw)),
        "oof_brier_calibrated": float(brier_score_loss(y, scores)),
    }
    return calibrator, threshold, report, threshold_curve(y, scores)


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.calibrate")
    parser.add_argument("--train", required=True, help="processed training split (not resampled)")
    parser.add_argument("--best-params", required=True, help="best LightGBM params from tune")
    parser.add_argument("--calibrator", required=True, help="output: fitted calibration (joblib)")
    parser.add_argument("--threshold", required=True, help="output: chosen threshold (JSON)")
    parser.add_argument("--metrics", required=True, help="output: out-of-fold metrics (JSON)")
    parser.add_argument("--threshold-curve", required=True, help="output: precision/recall/F1 by threshold")
    parser.add_argument("--threshold-image", required=True, help="output: the threshold curve as PNG")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    features, y = split_features(read_table(args.train), params.data.id_columns, args.train)
    best_params = read_json(args.best_params)
    calibrator, threshold, report, curve = calibrate_and_choose(features, y, params, best_params)
    save_object(calibrator, args.calibrator)
    write_json({"threshold": threshold, "objective": params.threshold.objective,
                "calibration": params.calibration.method}, args.threshold)
    write_json(report, args.metrics)
    write_json(plots.downsample_records(curve, "threshold"), args.threshold_curve)
    plots.save_figure(plots.threshold_figure(curve, threshold, params.threshold.objective), args.threshold_image)
    print(f"calibrate ({params.calibration.method}): threshold {threshold:.4f} for {params.threshold.objective}; "
          f"out-of-fold precision {report['oof_precision']:.3f}, recall {report['oof_recall']:.3f}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
