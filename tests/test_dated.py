"""Dated snapshots (data.time_column): every row kept, an out-of-time test split, folds in time order.

A customer exported every month has one row per snapshot date. The proofs watch
the data: which dates each split holds, which dates every fit saw beside the dates
it was validated on, and that no fit before evaluate sees a test date.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError
from stages.lib.core.params import parse_params
from stages.lib.data.dates import date_label, parse_dates
from stages.lib.data.schema import SNAPSHOT, split_features
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import generate_customers
from stages.lib.modeling.calibration import calibrate_and_choose
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import LIGHTGBM, ChosenModel, train_model
from stages.lib.modeling.family import choose_model
from stages.lib.modeling.folds import Timeline, time_splits
from stages.lib.modeling.ranking import Threshold
from stages.lib.scoring.batches import score_held_out
from stages.lib.scoring.scorer import Scorer
from tests.helpers import DATED, copy_repo, dvc, edited_params, python_module, recipe_of

ID, DATE = "customer_id", "snapshot_date"
MONTHS = ["2026-01-31", "2026-02-28", "2026-03-31"]


def three_monthly_snapshots(customers: pd.DataFrame) -> pd.DataFrame:
    """The issue's export: the same customers three times, at three month ends (ISO dates), each month's
    purchases drawn again."""
    rng = np.random.default_rng(11)
    months = [customers.assign(**{DATE: month, "purchased": rng.permutation(customers["purchased"].to_numpy())})
              for month in MONTHS]
    return pd.concat(months, ignore_index=True)


@pytest.fixture(scope="module")
def dated_params():
    return parse_params(edited_params({"data.time_column": DATE}))


def test_a_three_snapshot_export_keeps_every_row_and_tests_on_the_latest_snapshot(engine, customers, dated_params,
                                                                                  capsys):
    table = three_monthly_snapshots(customers)
    train, test, preprocessor = preprocess_customers(engine, table, dated_params.data, dated_params.preprocess, 42)
    assert "repeat" not in capsys.readouterr().err  # a customer at three dates is three rows, not a repeat
    assert len(train) + len(test) == len(table) == 3 * len(customers)
    assert set(test[SNAPSHOT].map(date_label)) == {MONTHS[-1]} and len(test) == len(customers)
    assert set(train[SNAPSHOT].map(date_label)) == set(MONTHS[:-1])
    # Every customer trains on its earlier rows and is tested on its latest: the deployment.
    assert set(test[ID]) == set(train[ID]) == set(customers[ID])
    # The date is never a feature.
    assert DATE not in preprocessor.input_columns and SNAPSHOT not in split_features(train, [ID])[0].columns


def test_a_gap_leaves_the_dates_before_the_test_out(engine, customers):
    params = parse_params(edited_params({"data.time_column": DATE, "data.gap_periods": 1}))
    train, test, _ = preprocess_customers(engine, three_monthly_snapshots(customers), params.data, params.preprocess,
                                          42)
    assert set(train[SNAPSHOT].map(date_label)) == {MONTHS[0]} and set(test[SNAPSHOT].map(date_label)) == {MONTHS[2]}


@pytest.mark.parametrize("given", ["2026-01-31", "2026-01-31T00:00:00", "2026-01-31 00:00",
                                   "2026-01-31T01:00:00+01:00"])
def test_iso_dates_and_timestamps_are_read_as_one_date(given):
    assert date_label(parse_dates(pd.Series([given]), DATE, 0, "t")[0]) == "2026-01-31"


@pytest.mark.parametrize("given", ["31/01/2026", "2026-02-30", "January 2026", ""])
def test_anything_else_is_one_error_naming_the_row(given):
    with pytest.raises(DataError, match=rf"'{DATE}' .* in data row 12; .*2026-01-31"):
        parse_dates(pd.Series(["2026-01-31", given]), DATE, 10, "t")


def test_time_ordered_folds_validate_on_later_dates_only_and_leave_the_gap_out():
    dates = np.repeat(pd.date_range("2026-01-31", periods=6, freq="ME").to_numpy(), 10)
    y = np.tile([0] * 9 + [1], 6)
    for gap in (0, 1):
        splits = time_splits(y, Timeline(dates, gap), 3, "tune.cv_folds", "t")
        assert len(splits) == 3
        for train, validate in splits:
            trained, validated = np.unique(dates[train]), np.unique(dates[validate])
            assert trained.max() < validated.min()
            # Expanding: everything up to the gap before the validated dates.
            assert list(trained) == list(np.unique(dates)[:np.searchsorted(np.unique(dates), validated.min()) - gap])
    with pytest.raises(DataError, match="6 snapshot dates cannot make tune.cv_folds=5 folds"):
        time_splits(y, Timeline(dates, 1), 5, "tune.cv_folds", "t")


@pytest.fixture(scope="module")
def dated_training(engine):
    """A dated table's training split (four months, the last one tested), features indexed by snapshot date so
    a spy reads each fit's dates from the rows it got."""
    params = parse_params(edited_params({**DATED, "generate.rows": 4000}))
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    features, y = split_features(train, params.data.id_columns)
    features.index = pd.DatetimeIndex(train[SNAPSHOT])
    return params, features, y, Timeline(train[SNAPSHOT].to_numpy()), set(test[SNAPSHOT])


def test_no_fit_before_evaluate_sees_a_row_dated_at_or_after_those_it_is_validated_on(engine, dated_training,
                                                                                      fit_spy):
    params, features, y, timeline, test_dates = dated_training
    recipe = recipe_of(params)
    choice = choose_model(engine, features, y, recipe, params.tune, timeline=timeline)
    calibrate_and_choose(engine, features, y, recipe, params.calibration, params.threshold,
                         ChosenModel(LIGHTGBM, choice.search.best_params), timeline)
    fits, scores = fit_spy.pipeline_fits, fit_spy.pipeline_scores
    # The search's and the grid's fits, the comparison's and calibrate's: each scored once, right after it.
    assert len(fits) == len(scores) > params.tune.n_iter * params.tune.cv_folds
    for fitted, scored in zip(fits, scores):
        assert fitted.index.max() < scored.index.min(), (fitted.index.max(), scored.index.min())
    seen = {date for frame in fits + scores for date in frame.index}
    assert not seen & test_dates and seen <= set(timeline.dates)


def test_calibrate_reports_a_backtest_of_the_dates_its_folds_validate(engine, dated_training):
    params, features, y, timeline, _ = dated_training
    _, _, report, _ = calibrate_and_choose(engine, features, y, recipe_of(params), params.calibration,
                                           params.threshold, ChosenModel(LIGHTGBM, {"num_leaves": 8}), timeline)
    dates = sorted(date_label(d) for d in np.unique(timeline.dates))
    assert list(report["oof_by_period"]) == dates[1:]  # the first date trains every fold, validated by none
    assert report["rows"] == int(np.isin(timeline.dates, np.unique(timeline.dates)[1:]).sum())


def test_each_test_dates_drift_counts_add_up_to_the_whole_test_splits(engine):
    params = parse_params(edited_params({**DATED, "generate.rows": 4000, "preprocess.test_periods": 2}))
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, preprocessor = preprocess_customers(engine, customers, params.data, params.preprocess, 42)
    model, _ = train_model(engine, train, recipe_of(params), [ID], {"num_leaves": 4})
    scores = score_held_out(engine, test, Scorer(preprocessor, model, ProbabilityCalibrator("none"), Threshold(0.5)),
                            [ID])
    assert len(scores.drift_by_date) == 2 and len(np.unique(scores.dates)) == 2
    for feature, whole in scores.drift.items():
        np.testing.assert_array_equal(sum(counts[feature] for counts in scores.drift_by_date.values()), whole)
    for date, counts in scores.drift_by_date.items():
        assert all(int(c.sum()) == int((scores.dates.astype(np.int64) == date).sum()) for c in counts.values())


def test_the_generated_snapshots_follow_customers_month_by_month():
    params = parse_params(edited_params({"generate.rows": 6000, "generate.snapshots": 6})).generate
    customers, truth = generate_customers(params, 42)
    months = sorted(customers[DATE].unique())
    assert len(months) == 6 and abs(len(customers) - 6000) < 30
    sizes = customers.groupby(DATE).size().to_numpy()
    assert (np.diff(sizes) > 0).all()  # customers join as the months go by
    assert not customers.duplicated([ID, DATE]).any()
    first_ids = set(customers.loc[customers[DATE] == months[0], ID])
    assert first_ids < set(customers.loc[customers[DATE] == months[-1], ID])  # nobody leaves
    joined = customers[~customers[ID].isin(first_ids)].sort_values(DATE).drop_duplicates(ID)
    assert (joined["tenure_months"] == 0).all()
    rates = customers.groupby(DATE)["purchased"].mean()
    assert rates.between(0.02, 0.06).all()
    keyed = customers[[ID, DATE]].merge(truth, on=[ID, DATE], how="left", validate="one_to_one")
    assert keyed["true_probability"].notna().all()


# --- a dated repository end to end ------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_dated_pipeline_evaluates_each_test_snapshot_beside_the_baselines(reproduced_dated_repo, tmp_path):
    repo = reproduced_dated_repo
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    dates = sorted(pd.read_csv(repo / "data" / "raw" / "customers.csv")[DATE].unique())
    assert list(metrics["periods"]) == dates[-1:]  # preprocess.test_periods: 1, the latest date
    [(date, period)] = metrics["periods"].items()
    assert period["rows"] == metrics["test_rows"] and period["buyers"] == metrics["actual_buyers"]
    assert period["average_precision"] == pytest.approx(metrics["average_precision"])
    assert set(period["baselines"]) == {"logistic_regression", "default_lightgbm"}
    assert set(period["drift_psi"]) == set(metrics["test_drift_psi"])
    backtest = json.loads((repo / "metrics" / "plots" / "evaluate" / "backtest.json").read_text())
    assert backtest == [{"snapshot": date, "model": period["average_precision"],
                         **{name: b["average_precision"] for name, b in period["baselines"].items()}}]
    calibrate = json.loads((repo / "metrics" / "calibrate.json").read_text())
    assert list(calibrate["oof_by_period"]) == dates[1:-1]  # the training dates its time-ordered folds validate
    assert "ideal" in metrics  # the truth is keyed by customer and date
    html = tmp_path / "plots"
    dvc("plots", "show", "-o", str(html), cwd=repo)
    assert "Backtest, average precision by snapshot date" in (html / "index.html").read_text()


@pytest.mark.e2e
def test_scoring_a_dated_table_passes_its_dates_through_and_says_when_it_holds_several(reproduced_dated_repo,
                                                                                      tmp_path):
    table = pd.read_csv(reproduced_dated_repo / "data" / "raw" / "customers.csv")
    two_dates = table[table[DATE].isin(sorted(table[DATE].unique())[-2:])].groupby(DATE).head(200)
    two_dates.to_csv(tmp_path / "customers.csv", index=False)
    result = python_module("stages.predict", "--input", tmp_path / "customers.csv", "--output",
                           tmp_path / "scores.csv", cwd=reproduced_dated_repo)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns[:3]) == [ID, DATE, "purchase_probability"]
    assert scores[DATE].tolist() == two_dates[DATE].tolist()
    assert "2 snapshot dates" in result.stderr and "ranked as one list" in result.stderr
    assert DATE not in result.stderr.split("ignored")[-1]  # the date is passed through, not ignored


@pytest.mark.e2e
def test_the_report_shows_the_out_of_time_test_by_snapshot(reproduced_dated_repo, tmp_path):
    repo = copy_repo(reproduced_dated_repo, tmp_path / "repo")
    python_module("stages.report", "--base", "HEAD", "--output", tmp_path / "report.md", "--plots-dir",
                  tmp_path / "plots", cwd=repo)
    report = (tmp_path / "report.md").read_text()
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    assert "## Out of time, by test snapshot" in report
    assert all(f"| {date} |" in report for date in metrics["periods"])


def test_the_ideal_scorer_joins_a_date_named_among_the_id_columns():
    """A random split of a dated export names the date among the ID columns; the table reader parses it as
    a date, the generator's truth keeps it as text: the join still finds every row."""
    import datetime

    from stages.lib.data.synthetic import true_probabilities_of

    truth = pd.DataFrame({"customer_id": [1, 1, 2], "snapshot_date": ["2025-01-31", "2025-02-28", "2025-02-28"],
                          "true_probability": [0.1, 0.2, 0.3]})
    test = pd.DataFrame({"customer_id": [2, 1], "snapshot_date": [datetime.date(2025, 2, 28),
                                                                  datetime.date(2025, 1, 31)]})
    np.testing.assert_array_equal(true_probabilities_of(test, truth, ["customer_id", "snapshot_date"]), [0.3, 0.1])
