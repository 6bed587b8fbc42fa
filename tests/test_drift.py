"""Drift: the training split's distributions saved with the preprocessor, and each feature's PSI against them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.data import drift
from stages.lib.data.preprocessor import CustomerPreprocessor
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import LIGHTGBM, train_model
from stages.lib.modeling.ranking import Threshold
from stages.lib.scoring.batches import PROBABILITY, score_table
from stages.lib.scoring.scorer import Scorer
from tests.helpers import recipe_of


def _raw_rows(customers: pd.DataFrame, split: pd.DataFrame, params) -> pd.DataFrame:
    """The rows of the raw table whose customers are in a processed split, in the split's order."""
    ids = params.data.id_columns[0]
    return customers.set_index(ids).loc[split[ids]].reset_index()


def _psi(preprocessor: CustomerPreprocessor, frame: pd.DataFrame) -> pd.DataFrame:
    return drift.drift_table(preprocessor.drift_reference, preprocessor.transform_and_count(frame, "customers")[1])


def test_psi_is_zero_for_the_same_shares_and_follows_its_formula():
    assert drift.psi(np.array([10, 30, 60]), np.array([1, 3, 6])) == pytest.approx(0, abs=1e-12)
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5)
    assert drift.psi(np.array([5, 5]), np.array([9, 1])) == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5))
    # An empty bin counts as a share of SHARE_FLOOR, not as an infinite surprise.
    assert np.isfinite(drift.psi(np.array([5, 5, 0]), np.array([0, 5, 5])))


def test_the_reference_is_the_training_split_counted_in_deciles_levels_and_missing(
        preprocessor, customers, train_table, params):
    train = _raw_rows(customers, train_table, params)
    reference = preprocessor.drift_reference
    assert reference.names() == preprocessor.input_columns
    for bins in reference.features:
        assert bins.rows == len(train)
        values = train[bins.feature]
        assert bins.counts[bins.missing_bin()] == values.isna().sum()
        if bins.kind == "numeric":
            assert list(bins.edges) == sorted(set(bins.edges)) and len(bins.counts) == len(bins.edges) + 2
            present = values.dropna().to_numpy(np.float32)
            at_most = [int((present <= np.float32(edge)).sum()) for edge in bins.edges]
            assert list(np.cumsum(bins.counts[:-2])) == at_most
            # Each edge is a training value at a decile: about a tenth of the values or more in each bin.
            assert set(np.float32(bins.edges)) <= set(present)
        else:
            assert bins.levels == tuple(preprocessor.levels_[bins.feature])
            frequent = values.dropna().astype(str).str.strip().value_counts()
            assert list(bins.counts[2:]) == [frequent.get(level, 0) for level in bins.levels[2:]]


def test_the_reference_from_partition_statistics_equals_the_one_fitted_in_memory(
        preprocessor, customers, train_table, params):
    """preprocess adds up bit histograms over partitions; CustomerPreprocessor.fit sorts the column."""
    fitted = CustomerPreprocessor(preprocessor.numeric_columns, preprocessor.categorical_columns,
                                  preprocessor.rare_category_min_count, preprocessor.id_columns)
    fitted.fit(_raw_rows(customers, train_table, params))
    assert fitted.drift_reference == preprocessor.drift_reference


def test_no_feature_drifts_on_the_held_out_split(preprocessor, customers, test_table, params):
    """The false-alarm rate at the default threshold is zero on a fresh sample of the training distribution."""
    table = _psi(preprocessor, _raw_rows(customers, test_table, params))
    assert len(table) == len(preprocessor.input_columns)
    assert drift.warning_line(table, drift.DEFAULT_THRESHOLD, len(test_table)) is None
    assert drift.drifted(table, drift.DEFAULT_THRESHOLD).empty


@pytest.mark.parametrize("column, shift", [
    ("age", lambda values: values + 15),                                   # a number moves
    ("email_open_rate", lambda values: values.where(values.index % 2 == 0)),  # half the values go missing
    ("device", lambda values: values.where(values.index % 4 != 0, "smart_tv")),  # an unseen level
])
def test_one_shifted_column_is_named_and_no_other(preprocessor, customers, test_table, params, column, shift):
    rows = _raw_rows(customers, test_table, params)
    rows[column] = shift(rows[column])
    table = _psi(preprocessor, rows)
    assert drift.drifted(table, drift.DEFAULT_THRESHOLD)["feature"].tolist() == [column]
    line = drift.warning_line(table, drift.DEFAULT_THRESHOLD, len(rows))
    assert line.startswith("warning: drift: 1 feature(s)") and f"{column} (PSI " in line
    assert "\n" not in line


def test_a_column_that_goes_missing_shows_in_the_missing_shares(preprocessor, customers, test_table, params):
    rows = _raw_rows(customers, test_table, params)
    rows["tenure_months"] = np.nan
    record = _psi(preprocessor, rows).set_index("feature").loc["tenure_months"]
    assert record["missing_share_now"] == 1.0 and record["missing_share_training"] == 0.0
    assert record["psi"] > drift.DEFAULT_THRESHOLD


def test_counts_add_up_over_batches(preprocessor, customers):
    whole = preprocessor.transform_and_count(customers, "customers")[1]
    pieces = [preprocessor.transform_and_count(customers.iloc[rows], "customers")[1]
              for rows in np.array_split(np.arange(len(customers)), 7)]
    added = drift.added_counts(pieces)
    assert all(np.array_equal(added[f], whole[f]) for f in whole)
    assert all(int(counts.sum()) == len(customers) for counts in whole.values())


def test_the_processed_test_split_counts_as_its_raw_rows(preprocessor, customers, test_table, params, engine,
                                                         tmp_path):
    """evaluate counts the processed split: a number is missing where its indicator says so."""
    raw = preprocessor.transform_and_count(_raw_rows(customers, test_table, params), "customers")[1]
    processed = preprocessor.processed_drift_counts(test_table)
    for feature in raw:
        if feature in preprocessor.numeric_columns and feature not in preprocessor.indicator_columns_:
            continue  # no indicator: a missing value is its median once processed (documented)
        np.testing.assert_array_equal(processed[feature], raw[feature], err_msg=feature)
    table = drift.drift_table(preprocessor.drift_reference, processed)
    assert sorted(table["feature"]) == sorted(preprocessor.input_columns)
    assert table["psi"].max() < drift.DEFAULT_THRESHOLD


def test_scoring_counts_every_row_and_never_changes_a_score(preprocessor, customers, params, resampled_table,
                                                            engine, tmp_path):
    model = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, {"num_leaves": 8},
                        LIGHTGBM)[0]
    scorer = Scorer(preprocessor, model, ProbabilityCalibrator("none").fit(None, None), Threshold(probability=0.5))
    path = tmp_path / "customers.parquet"
    customers.to_parquet(path, index=False)
    summary = score_table(engine, path, tmp_path / "scores.parquet", scorer, 1, batch_rows=1000)
    assert all(int(counts.sum()) == len(customers) for counts in summary.drift.values())
    # The scores are the model's on the transformed rows, whatever the counting did beside them.
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    np.testing.assert_array_equal(scores[PROBABILITY].to_numpy(),
                                  model.predict_proba(preprocessor.transform(customers))[:, 1])
