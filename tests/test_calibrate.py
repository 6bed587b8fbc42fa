"""calibrate: each threshold objective on a hand-checked example; calibration fixes over-confidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from stages import calibrate
from stages.lib.core.errors import DataError
from stages.lib.core.params_model import ThresholdParams
from stages.lib.core.tables import write_table
from stages.lib.modeling.calibration import calibrate_and_choose
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import LIGHTGBM, ChosenModel
from stages.lib.modeling.ranking import Threshold
from stages.lib.modeling.thresholds import choose_threshold, threshold_curve
from tests.helpers import recipe_of, write_params

#   t     0.95  0.9   0.8   0.7   0.6   0.5   0.4   0.3   0.2   0.1
#   TP    1     2     2     3     3     3     4     4     4     4
#   FP    0     0     1     1     2     3     3     4     5     6
#   prec  1     1     .667  .75   .6    .5    .571  .5    .444  .4
#   rec   .25   .5    .5    .75   .75   .75   1     1     1     1
#   F1    .4    .667  .571  .75   .667  .6    .727  .667  .615  .571
SCORES = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])


def objective(name: str, **settings) -> ThresholdParams:
    return ThresholdParams(objective=name, **settings)


def test_threshold_curve_matches_the_hand_checked_table():
    curve = threshold_curve(LABELS, SCORES).set_index("threshold")
    assert curve.loc[0.7, "precision"] == pytest.approx(0.75)
    assert curve.loc[0.7, "recall"] == pytest.approx(0.75)
    assert curve.loc[0.4, "precision"] == pytest.approx(4 / 7)
    assert curve.loc[0.4, "f1"] == pytest.approx(8 / 11)
    assert curve.loc[0.95, "f1"] == pytest.approx(0.4)
    assert sorted(curve.index) == sorted(SCORES)


def test_f1_objective_picks_the_highest_f1():
    assert choose_threshold(LABELS, SCORES, SCORES, objective("f1")) == Threshold(0.7)


@pytest.mark.parametrize("minimum, expected", [
    (0.5, 0.3),    # 0.3 has precision exactly 0.5; below it precision drops
    (0.55, 0.4),   # the lowest threshold reaching 0.55, though 0.5 above it does not
    (0.7, 0.7),
    (0.8, 0.9),    # precision 1 at 0.95 and 0.9: the lower one has the better recall
    (1.0, 0.9),
])
def test_min_precision_picks_the_lowest_threshold_with_enough_precision(minimum, expected):
    assert choose_threshold(LABELS, SCORES, SCORES, objective("min_precision", min_precision=minimum)) == Threshold(
        expected)


def test_min_precision_out_of_reach_is_a_data_error():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 1, 0, 0])
    with pytest.raises(DataError, match="no threshold reaches precision 0.9"):
        choose_threshold(labels, scores, scores, objective("min_precision", min_precision=0.9))


@pytest.mark.parametrize("fraction, expected", [
    (0.3, 0.8),    # k = 3: the third best score
    (0.25, 0.8),   # k = ceil(2.5) = 3
    (0.05, 0.95),  # k = ceil(0.5) = 1: at least one customer
    (1.0, 0.1),
])
def test_top_fraction_picks_the_kth_best_score(fraction, expected):
    chosen = choose_threshold(LABELS, SCORES, SCORES, objective("top_fraction", top_fraction=fraction))
    assert chosen.probability == expected


def test_top_fraction_is_not_fooled_by_floating_point():
    # 0.07 * 100 is 7.000000000000001 in floating point: the budget is still 7 customers.
    scores = np.linspace(1.0, 0.01, 100)
    labels = (np.arange(100) % 10 == 0).astype(int)
    threshold = choose_threshold(labels, scores, scores, objective("top_fraction", top_fraction=0.07))
    assert threshold.probability == scores[6]
    assert int(np.sum(threshold.flags(scores, scores))) == 7


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.33, 0.5])
def test_top_fraction_flags_exactly_its_share_where_calibration_tied_the_probabilities(fraction):
    # Isotonic calibration maps many raw scores to one probability; the budget still flags
    # exactly ceil(fraction x rows), the best raw scores among the tied ones.
    raw = np.random.default_rng(3).random(1000)
    probability = np.floor(raw * 7) / 7  # 7 distinct values, about 143 rows each
    threshold = choose_threshold(np.zeros(1000, dtype=int), probability, raw,
                                 objective("top_fraction", top_fraction=fraction))
    flagged = threshold.flags(probability, raw)
    assert flagged.sum() == int(np.ceil(fraction * 1000))
    assert raw[flagged].min() > raw[~flagged].max()


def test_top_fraction_ignores_the_labels():
    shuffled = np.random.default_rng(0).permutation(LABELS)
    setting = objective("top_fraction", top_fraction=0.3)
    assert choose_threshold(shuffled, SCORES, SCORES, setting) == choose_threshold(LABELS, SCORES, SCORES, setting)


def overconfident_scores(n: int, seed: int):
    """(labels, over-confident scores, true probabilities): scores push the truth towards 0 and 1."""
    rng = np.random.default_rng(seed)
    true = rng.beta(1, 12, n)  # a rare class, as in the customer data
    y = (rng.random(n) < true).astype(int)
    logit = np.log(true / (1 - true))
    # Three times the true log-odds, shifted up as SMOTE-balanced training does.
    scores = 1 / (1 + np.exp(-(3 * logit + 4)))
    return y, scores, true


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_lowers_the_brier_score_of_overconfident_scores(method):
    y_fit, scores_fit, _ = overconfident_scores(8000, seed=1)
    y_new, scores_new, true_new = overconfident_scores(8000, seed=2)
    raw = brier_score_loss(y_new, scores_new)
    ideal = brier_score_loss(y_new, true_new)
    assert raw > 1.15 * ideal  # the data really is over-confident
    calibrated = ProbabilityCalibrator(method).fit(scores_fit, y_fit).transform(scores_new)
    assert brier_score_loss(y_new, calibrated) < raw
    # Fitted on other customers, the calibration gets within 1 % of the true probabilities' Brier.
    assert brier_score_loss(y_new, calibrated) < 1.01 * ideal
    # Calibrated probabilities forecast the number of buyers; raw ones overshoot it.
    assert calibrated.sum() == pytest.approx(y_new.sum(), rel=0.1)
    assert scores_new.sum() > 1.2 * y_new.sum()
    assert np.all((calibrated >= 0) & (calibrated <= 1))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_keeps_the_ranking(method):
    y, scores, _ = overconfident_scores(4000, seed=3)
    calibrated = ProbabilityCalibrator(method).fit(scores, y).transform(scores)
    order = np.argsort(scores)
    assert np.all(np.diff(calibrated[order]) >= -1e-12)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_no_calibrated_probability_is_exactly_0_or_1(method):
    # Scores that separate well at both ends: plain isotonic regression gives its lowest block (no buyer)
    # exactly 0 and its highest (no non-buyer) exactly 1.
    rng = np.random.default_rng(6)
    scores = rng.random(5000)
    y = (rng.random(5000) < np.where(scores < 0.3, 0.0, np.where(scores > 0.97, 1.0, scores))).astype(int)
    from sklearn.isotonic import IsotonicRegression
    plain = IsotonicRegression(out_of_bounds="clip").fit(scores, y).predict(scores)
    assert (plain == 0).sum() > 1000 and (plain == 1).sum() > 50
    new = rng.random(5000) * 1.2 - 0.1  # beyond the fitted range at both ends too
    calibrated = ProbabilityCalibrator(method).fit(scores, y).transform(new)
    assert np.all((calibrated > 0) & (calibrated < 1))
    if method == "isotonic":
        lowest, highest = (plain == 0).sum(), (plain == 1).sum()
        # The Jeffreys estimate of each end block's rate, and the isotonic values everywhere else.
        assert calibrated.min() == pytest.approx(0.5 / (lowest + 1))
        assert calibrated.max() == pytest.approx(1 - 0.5 / (highest + 1))
        inside = (plain[np.argsort(scores)] > 0) & (plain[np.argsort(scores)] < 1)
        again = ProbabilityCalibrator(method).fit(scores, y).transform(np.sort(scores))
        assert np.allclose(again[inside], np.sort(plain)[inside], rtol=0, atol=1e-15)


def test_no_calibration_is_the_identity():
    y, scores, _ = overconfident_scores(500, seed=4)
    assert np.array_equal(ProbabilityCalibrator("none").fit(scores, y).transform(scores), scores)


def test_calibrate_and_choose_on_out_of_fold_predictions(engine, params, train_xy):
    features, y = train_xy
    best = ChosenModel(LIGHTGBM, {"learning_rate": 0.1, "num_leaves": 15})
    calibrator, threshold, report, curve = calibrate_and_choose(engine, features, y, recipe_of(params),
                                                                params.calibration, params.threshold, best)
    assert report["rows"] == len(y)
    assert threshold.raw is None  # the F1 objective decides on the calibrated probability alone
    assert threshold.probability in set(curve["threshold"])
    # The F1 objective: the chosen threshold has the highest F1 on the curve.
    assert curve.loc[curve["threshold"] == threshold.probability, "f1"].iloc[0] == curve["f1"].max()
    assert report["oof_f1"] == pytest.approx(curve["f1"].max())
    # Isotonic regression fitted in sample never raises the squared error of the scores it maps.
    assert report["oof_brier_calibrated"] <= report["oof_brier_raw"]
    assert isinstance(calibrator, ProbabilityCalibrator) and calibrator.method == params.calibration.method


def test_cli_reads_only_training_split_and_best_params(tmp_path, raw_params, train_table, test_table, read_spy):
    train_path, test_path = tmp_path / "train.parquet", tmp_path / "test.parquet"
    write_table(train_table, train_path)
    write_table(test_table, test_path)
    best_path = tmp_path / "best.json"
    best_path.write_text(json.dumps({"family": "lightgbm", "params": {"learning_rate": 0.1, "num_leaves": 15}}))
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    opened = read_spy(calibrate)
    calibrate.main(["--params", str(params_path), "--train", str(train_path), "--best-params", str(best_path),
                    "--calibrator", str(tmp_path / "cal.joblib"), "--threshold", str(tmp_path / "thr.json"),
                    "--metrics", str(tmp_path / "cal.json"), "--threshold-curve", str(tmp_path / "curve.json"),
                    "--threshold-image", str(tmp_path / "curve.png")])
    assert sorted(opened) == sorted([str(train_path), str(best_path)])
    saved = json.loads((tmp_path / "thr.json").read_text())
    report = json.loads((tmp_path / "cal.json").read_text())
    assert 0 < saved["threshold"] <= 1 and saved["raw_threshold"] is None
    assert report["objective"] == saved["objective"]
    assert saved["objective"] == raw_params["threshold"]["objective"]
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_the_profit_objective_picks_the_most_profitable_threshold(params_with):
    rng = np.random.default_rng(7)
    probability = rng.beta(0.5, 8, 6000).round(3)  # calibrated, with ties
    y = (rng.random(6000) < probability).astype(np.int8)
    objective = params_with(threshold__objective="profit", threshold__contact_cost=2.0,
                            threshold__buyer_value=30.0).threshold
    chosen = choose_threshold(y, probability, probability, objective)
    profits = {t: 30.0 * y[probability >= t].sum() - 2.0 * (probability >= t).sum() for t in np.unique(probability)}
    best = max(profits.values())
    assert profits[chosen.probability] == best
    assert chosen.probability == max(t for t, value in profits.items() if value == best)  # fewest contacts
    # Calibrated probabilities: contacting pays from about cost / value = 0.067 up.
    assert 0.03 < chosen.probability < 0.12
    curve = threshold_curve(y, probability, objective)
    assert curve.set_index("threshold")["profit"].to_dict() == pytest.approx(profits)


def test_evaluate_reports_the_profit_at_the_threshold_and_at_one_half():
    from stages.lib.evaluation.metrics import profit_metrics

    y = np.array([1, 0, 1, 0, 0])
    probability = np.array([0.9, 0.6, 0.3, 0.2, 0.1])
    numbers = profit_metrics(y, probability, probability >= 0.25, buyer_value=10.0, contact_cost=1.0)
    assert numbers == {"expected": pytest.approx(10 * 1.8 - 3), "realised": 10 * 2 - 3, "contacts": 3}
