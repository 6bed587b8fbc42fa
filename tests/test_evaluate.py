"""evaluate: decision metrics and top-of-list metrics by hand, and the ideal-scorer section."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from stages import evaluate
from stages.lib.core.files import save_object, write_json
from stages.lib.core.params_model import EvaluateParams
from stages.lib.core.tables import write_table
from stages.lib.data import drift
from stages.lib.data.schema import LABEL, split_features
from stages.lib.evaluation import plot_data
from stages.lib.evaluation.baselines import baselines_note
from stages.lib.evaluation.comparison import compare
from stages.lib.evaluation.metrics import decision_metrics, evaluate_scores, ideal_scorer_metrics, top_of_list_metrics
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import train_model
from stages.lib.modeling.ranking import Threshold
from tests.helpers import recipe_of, write_params

FLAT_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
             "tp", "fp", "tn", "fn", "threshold"}


def test_decision_metrics_on_a_hand_checked_confusion_matrix():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0])
    flagged = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    # TP 2 (rows 0, 1), FN 2 (rows 2, 8), FP 2 (rows 3, 9), TN 4.
    assert decision_metrics(y, flagged) == {
        "tp": 2, "fp": 2, "fn": 2, "tn": 4,
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.6,
    }


def test_decision_metrics_unequal_precision_and_recall_with_suffix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    flagged = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    metrics = decision_metrics(y, flagged, suffix="_at_0_5")
    assert (metrics["tp_at_0_5"], metrics["fp_at_0_5"], metrics["fn_at_0_5"], metrics["tn_at_0_5"]) == (1, 2, 3, 2)
    assert metrics["precision_at_0_5"] == pytest.approx(1 / 3)
    assert metrics["recall_at_0_5"] == pytest.approx(1 / 4)
    assert metrics["f1_at_0_5"] == pytest.approx(2 / 7)  # 2PR/(P+R) = (1/6)/(7/12)
    assert metrics["accuracy_at_0_5"] == pytest.approx(3 / 8)


def test_decision_metrics_when_nobody_is_flagged():
    y = np.array([1, 0, 0, 0])
    metrics = decision_metrics(y, np.zeros(4, dtype=bool))
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0 and metrics["f1"] == 0.0
    assert metrics["accuracy"] == 0.75 and metrics["fn"] == 1 and metrics["tn"] == 3


def test_lift_and_capture_at_top_by_hand():
    # Ten customers, 3 buyers (base rate 0.3); the top 20 % are rows 0 and 1 (scores .9, .8).
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.05, 0.4, 0.5, 0.6])
    metrics = top_of_list_metrics(y, scores, 0.2)
    assert metrics["k"] == 2
    assert metrics["precision_at_k"] == 0.5
    assert metrics["lift_at_top"] == pytest.approx(0.5 / 0.3)
    assert metrics["capture_rate_at_top"] == pytest.approx(1 / 3)
    # Top 40 %: rows 0, 1, 3, 9 hold 2 of the 3 buyers.
    wider = top_of_list_metrics(y, scores, 0.4)
    assert (wider["k"], wider["precision_at_k"]) == (4, 0.5)
    assert wider["capture_rate_at_top"] == pytest.approx(2 / 3)


def test_top_of_list_budget_is_not_fooled_by_floating_point():
    y = np.zeros(100, dtype=int)
    y[:10] = 1
    scores = np.linspace(1.0, 0.01, 100)
    assert top_of_list_metrics(y, scores, 0.07)["k"] == 7


def test_evaluate_scores_reports_the_flat_keys_and_both_thresholds():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    scores = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    metrics = evaluate_scores(y, scores, scores, Threshold(0.6), EvaluateParams(top_fraction=0.1, calibration_bins=10),
                              seed=0)
    assert FLAT_KEYS <= set(metrics)
    assert {"precision_at_0_5", "recall_at_0_5", "f1_at_0_5", "tp_at_0_5", "brier", "log_loss", "mcc",
            "balanced_accuracy", "lift_at_top", "capture_rate_at_top", "precision_at_k", "baseline"} <= set(metrics)
    assert metrics["threshold"] == 0.6
    keys = ("tp", "fp", "tn", "fn", "precision", "recall")
    assert {k: metrics[k] for k in keys} == {k: v for k, v in decision_metrics(y, scores >= 0.6).items() if k in keys}
    assert metrics["tp_at_0_5"] == int(np.sum((scores >= 0.5) & (y == 1)))
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == 400 == metrics["test_rows"]
    assert metrics["baseline"]["accuracy"] == pytest.approx(1 - y.mean())
    assert metrics["expected_buyers"] == pytest.approx(scores.sum())
    assert metrics["actual_buyers"] == int(y.sum())


def test_ideal_scorer_ratios():
    y = np.array([1, 0, 1, 0, 0, 0])
    truth = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.1])     # ranks perfectly: AUC 1
    model = np.array([0.6, 0.7, 0.5, 0.2, 0.1, 0.1])     # 6 of 8 pairs right: AUC 0.75
    ideal = ideal_scorer_metrics(y, model, model, truth)
    assert ideal["roc_auc"] == 1.0
    assert ideal["roc_auc_ratio"] == pytest.approx(0.75)
    assert ideal["average_precision"] == 1.0
    assert ideal["brier"] == pytest.approx(np.mean((truth - y) ** 2))
    assert ideal["brier_ratio"] == pytest.approx(np.mean((model - y) ** 2) / np.mean((truth - y) ** 2))


RANKING_KEYS = ("roc_auc", "average_precision", "precision_at_k", "lift_at_top", "capture_rate_at_top")


@pytest.mark.parametrize("method", ["none", "sigmoid", "isotonic"])
def test_calibration_never_changes_a_ranking_number(engine, params, resampled_table, train_table, test_table, method):
    model, _ = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, {"num_leaves": 15})
    fit_x, fit_y = split_features(train_table, params.data.id_columns)
    calibrator = ProbabilityCalibrator(method).fit(model.predict_proba(fit_x)[:, 1], fit_y)
    test_x, test_y = split_features(test_table, params.data.id_columns)
    raw = model.predict_proba(test_x)[:, 1]
    probability = calibrator.transform(raw)
    settings = EvaluateParams(top_fraction=0.1, calibration_bins=10)
    calibrated = evaluate_scores(test_y, probability, raw, Threshold(0.5), settings, seed=0)
    uncalibrated = evaluate_scores(test_y, raw, raw, Threshold(0.5), settings, seed=0)
    assert {k: calibrated[k] for k in RANKING_KEYS} == {k: uncalibrated[k] for k in RANKING_KEYS}
    curves = (plot_data.ROC, plot_data.PRECISION_RECALL, plot_data.GAINS)
    calibrated_plots = plot_data.test_plot_data(test_y, probability, raw, Threshold(0.5), settings)
    raw_plots = plot_data.test_plot_data(test_y, raw, raw, Threshold(0.5), settings)
    assert {c: calibrated_plots[c] for c in curves} == {c: raw_plots[c] for c in curves}
    if method == "isotonic":
        # What the order by raw score saves: isotonic ties cost the probabilities alone average precision.
        assert len(np.unique(probability)) < len(np.unique(raw)) / 10
        assert average_precision_score(test_y, probability) != calibrated["average_precision"]


@pytest.fixture(scope="module")
def evaluate_inputs(tmp_path_factory, engine, params, small_raw, _resampled, _splits, _generated, preprocessor):
    """Artifacts evaluate reads, written once; returns a function that runs it (into a folder of its own)."""
    folder = tmp_path_factory.mktemp("evaluate-inputs")
    save_object(train_model(engine, _resampled[0].copy(), recipe_of(params), params.data.id_columns,
                            {"num_leaves": 15})[0], folder / "model.joblib")
    save_object(ProbabilityCalibrator("none").fit(None, None), folder / "calibrator.joblib")
    save_object(preprocessor, folder / "preprocessor.joblib")
    write_json({"threshold": 0.5}, folder / "threshold.json")
    write_table(_splits[1], folder / "test.parquet")
    write_table(_splits[0], folder / "train.parquet")
    write_table(_generated[1], folder / "true_probability.parquet")
    generated = str(folder / "customers.csv")

    def run(data_path: str = generated, truth: str = str(folder / "true_probability.parquet"),
            model: Path = folder / "model.joblib") -> dict:
        out = Path(tempfile.mkdtemp(dir=folder))
        raw = copy.deepcopy(small_raw)
        raw["data"]["path"] = data_path
        params_path = write_params(raw, out / "params.yaml")
        evaluate.main(["--params", str(params_path), "--test", str(folder / "test.parquet"),
                       "--train", str(folder / "train.parquet"),
                       "--model", str(model), "--calibrator", str(folder / "calibrator.joblib"),
                       "--preprocessor", str(folder / "preprocessor.joblib"),
                       "--threshold", str(folder / "threshold.json"), "--true-probabilities", truth,
                       "--generated-path", generated, "--metrics", str(out / "metrics.json"),
                       "--plots-dir", str(out / "plots")])
        return {**json.loads((out / "metrics.json").read_text()), "__out__": str(out)}
    return run


@pytest.fixture(scope="module")
def default_evaluation(evaluate_inputs) -> tuple[dict, Path, str]:
    """evaluate on the generated data with every input present, once: its metrics, output folder and stdout."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        metrics = evaluate_inputs()
    return metrics, Path(metrics.pop("__out__")), stdout.getvalue()


def test_ideal_section_present_for_the_generated_data(default_evaluation):
    metrics = default_evaluation[0]
    assert FLAT_KEYS <= set(metrics)
    assert set(metrics["ideal"]) == {"roc_auc", "average_precision", "brier",
                                     "roc_auc_ratio", "average_precision_ratio", "brier_ratio"}
    assert metrics["ideal"]["roc_auc_ratio"] == pytest.approx(metrics["roc_auc"] / metrics["ideal"]["roc_auc"])
    # The true probabilities rank the test customers better than the model.
    assert metrics["ideal"]["roc_auc"] > metrics["roc_auc"]


def test_ideal_section_absent_for_another_table(evaluate_inputs, tmp_path):
    metrics = evaluate_inputs(data_path=str(tmp_path / "own_customers.csv"))
    assert "ideal" not in metrics
    assert FLAT_KEYS <= set(metrics)


def test_ideal_section_absent_without_true_probabilities(evaluate_inputs, tmp_path):
    assert "ideal" not in evaluate_inputs(truth=str(tmp_path / "absent.parquet"))


def test_ideal_section_absent_when_truth_does_not_cover_the_test_rows(evaluate_inputs, tmp_path,
                                                                     true_probabilities, test_table):
    partial = true_probabilities[~true_probabilities["customer_id"].isin(test_table["customer_id"].head(5))]
    write_table(partial, tmp_path / "partial.parquet")
    assert "ideal" not in evaluate_inputs(truth=str(tmp_path / "partial.parquet"))


def test_plot_files_are_written(default_evaluation):
    metrics, out, _ = default_evaluation
    plots = out / "plots"
    for name in ("roc.json", "precision_recall.json", "confusion.json", "calibration.json", "gains.json",
                 "feature_importance.json"):
        records = json.loads((plots / name).read_text())
        assert isinstance(records, list) and records, name
    confusion = json.loads((plots / "confusion.json").read_text())
    counts = {(r["actual"], r["predicted"]): r["count"] for r in confusion}
    assert counts[("buyer", "buyer")] == metrics["tp"]
    assert counts[("non-buyer", "buyer")] == metrics["fp"]
    assert (plots / "feature_importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_record_each_features_psi_on_the_test_split(default_evaluation, preprocessor, test_table):
    metrics = default_evaluation[0]
    assert list(metrics["test_drift_psi"]) == preprocessor.input_columns
    counts = preprocessor.processed_drift_counts(test_table)
    for bins in preprocessor.drift_reference.features:
        expected = drift.psi(np.array(bins.counts), counts[bins.feature])
        assert metrics["test_drift_psi"][bins.feature] == pytest.approx(expected, abs=1e-6)
        assert metrics["test_drift_psi"][bins.feature] < drift.DEFAULT_THRESHOLD  # no drift: a held-out sample


def test_metrics_put_the_baselines_beside_the_model(default_evaluation):
    metrics = default_evaluation[0]
    assert set(metrics["baselines"]) == {"logistic_regression", "default_lightgbm"}
    for numbers in metrics["baselines"].values():
        assert set(numbers) == {"average_precision", "roc_auc", "precision_at_k", "capture_rate_at_top",
                                "average_precision_difference_se"}
        assert 0.5 < numbers["roc_auc"] <= 1 and 0 < numbers["average_precision"] <= 1
        assert 0 < numbers["average_precision_difference_se"] < 0.2


def test_the_logistic_baseline_is_near_ideal_on_the_linear_truth(engine):
    from stages.lib.core.params import parse_params
    from stages.lib.data.split import preprocess_customers
    from stages.lib.data.synthetic import generate_customers
    from stages.lib.evaluation.baselines import baseline_metrics, fit_baselines
    from tests.helpers import edited_params

    # 60,000 customers: at 20,000 one split in four leaves the estimate 0.91 of ideal (12,000 test customers here).
    params = parse_params(edited_params({"generate.rows": 60000, "generate.truth": "linear"}))
    customers, truth = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    features, y = split_features(train, params.data.id_columns)
    test_features, test_y = split_features(test, params.data.id_columns)
    fitted = fit_baselines(engine, features, y, params.base.seed, params.model.threads)
    scores = {name: model.predict_proba(test_features)[:, 1] for name, model in fitted.items()}
    numbers = baseline_metrics(scores, test_y, 0.1, scores["default_lightgbm"], params.base.seed)
    ideal = test[["customer_id"]].merge(truth, on="customer_id")["true_probability"].to_numpy()
    assert numbers["logistic_regression"]["average_precision"] >= 0.95 * average_precision_score(test_y, ideal)


def test_a_baseline_the_model_does_not_clearly_beat_is_named_in_one_note_line():
    se = "average_precision_difference_se"
    metrics = {"average_precision": 0.859,
               "baselines": {"logistic_regression": {"average_precision": 0.888, se: 0.012},
                             "default_lightgbm": {"average_precision": 0.842, se: 0.01}}}
    note = baselines_note(metrics)
    assert note.startswith("note: ") and "\n" not in note
    # 0.888 is 2.4 standard errors above the model: better; 0.842 is 1.7 below: within the noise.
    assert ("logistic_regression 0.8880 (ranks better; model minus it -0.0290, 95 % interval -0.0525 to -0.0055)"
            in note)
    assert "default_lightgbm 0.8420 (no clear difference; model minus it +0.0170, 95 % interval -0.0026 to +0.0366)" \
        in note
    metrics["average_precision"] = 0.93  # clearly above both: no note
    assert baselines_note(metrics) is None
    metrics["average_precision"] = 0.888  # a tie is not "better" either way
    assert "logistic_regression 0.8880 (no clear difference" in baselines_note(metrics)


def test_evaluate_prints_the_note_when_a_baseline_wins(evaluate_inputs, tmp_path, engine, params, train_table, capsys):
    # A model trained on shuffled labels ranks no better than chance; both baselines beat it.
    labels = np.random.default_rng(0).permutation(train_table[LABEL].to_numpy())
    shuffled = train_table.assign(**{LABEL: labels})
    save_object(train_model(engine, shuffled, recipe_of(params), params.data.id_columns, {"num_leaves": 4})[0],
                tmp_path / "model.joblib")
    metrics = evaluate_inputs(model=tmp_path / "model.joblib")
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert all(name in notes[0] for name in metrics["baselines"]
               if metrics["baselines"][name]["average_precision"] > metrics["average_precision"])
    assert "logistic_regression" in notes[0]


def test_evaluate_notes_exactly_the_baselines_the_model_does_not_clearly_beat(default_evaluation):
    metrics, _, stdout = default_evaluation
    unclear = [name for name, numbers in metrics["baselines"].items()
               if compare(metrics["average_precision"], numbers["average_precision"],
                          numbers["average_precision_difference_se"]).verdict != "better"]
    notes = [line for line in stdout.splitlines() if line.startswith("note: ")]
    if unclear:
        assert len(notes) == 1 and all(f"{name} " in notes[0] for name in unclear)
        assert all(f"{name} " not in notes[0] for name in metrics["baselines"] if name not in unclear)
    else:
        assert not notes


def test_weighted_average_precision_is_scikit_learns_with_rows_repeated():
    from stages.lib.evaluation.metrics import ranked, weighted_average_precision

    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.1).astype(np.int8)
    score = rng.integers(0, 40, 500).astype(float) + 3 * y  # many ties
    ordered = ranked(y, score)
    assert weighted_average_precision(*ordered, np.ones(500)) == pytest.approx(average_precision_score(y, score),
                                                                                abs=1e-12)
    counts = rng.poisson(1.0, 500)
    repeated = np.repeat(np.arange(500), counts)
    assert weighted_average_precision(*ordered, counts.astype(float)) == pytest.approx(
        average_precision_score(y[repeated], score[repeated]), abs=1e-12)


def test_the_paired_bootstrap_measures_the_noise_of_a_difference():
    from stages.lib.evaluation.metrics import paired_bootstrap_se

    rng = np.random.default_rng(2)
    y = (rng.random(4000) < 0.05).astype(np.int8)
    good = y + rng.normal(0, 0.8, 4000)
    assert paired_bootstrap_se(y, good, good, seed=3) == 0  # the same ranking: no difference to be unsure of
    close = good + rng.normal(0, 0.05, 4000)  # nearly the same ranking: the pairing cancels most noise
    far = rng.normal(0, 1, 4000)              # an unrelated one
    assert 0 < paired_bootstrap_se(y, good, close, seed=3) < paired_bootstrap_se(y, good, far, seed=3) < 0.1
    assert paired_bootstrap_se(y, good, far, seed=3) == paired_bootstrap_se(y, good, far, seed=3)
