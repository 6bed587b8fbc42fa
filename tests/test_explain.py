"""Reason codes and contributions: for either model family they add up to the model's log-odds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.data.schema import LABEL
from stages.lib.evaluation.explanations import (
    contributions,
    empty_reasons,
    largest_by_size,
    log_odds,
    mean_absolute_contributions,
    reason_codes,
)
from stages.lib.modeling.estimators import LIGHTGBM, LOGISTIC_REGRESSION, train_model
from tests.helpers import recipe_of


@pytest.fixture(scope="module", params=[LIGHTGBM, LOGISTIC_REGRESSION])
def fitted(request, params, _resampled):
    from stages.lib.engines.local.engine import LocalEngine

    tuned = {"num_leaves": 8} if request.param == LIGHTGBM else {"C": 0.1}
    return train_model(LocalEngine(1), _resampled[0].copy(), recipe_of(params), params.data.id_columns, tuned,
                       request.param)[0]


def test_contributions_and_bias_add_up_to_the_log_odds_of_every_row(fitted, test_table):
    features = test_table.drop(columns=["customer_id", LABEL])
    values, bias = contributions(fitted, features, threads=2)
    assert values.shape == features.shape
    np.testing.assert_allclose(values.sum(axis=1) + bias, log_odds(fitted, features, threads=2), rtol=0, atol=1e-9)
    # The log-odds are the model's own probability, before calibration.
    np.testing.assert_allclose(1 / (1 + np.exp(-log_odds(fitted, features))), fitted.predict_proba(features)[:, 1],
                               rtol=1e-6)


def test_reason_codes_are_the_largest_contributions_as_readable_text():
    features = pd.DataFrame({"visits": [3.0, 0.5], "device": pd.Categorical(["mobile", "desktop"]),
                             "age": [41.0, 19.25]})
    values = np.array([[0.2, -0.1, 0.7], [-0.3, 0.05, -0.01]])
    reasons = reason_codes(values, features, 2)
    assert list(reasons.columns) == ["reason_1", "reason_1_contribution", "reason_2", "reason_2_contribution"]
    # By size, either way: the second customer's score was held down most by visits, then pushed up by device.
    assert reasons["reason_1"].tolist() == ["age=41 (+)", "visits=0.5 (-)"]
    assert reasons["reason_2"].tolist() == ["visits=3 (+)", "device=desktop (+)"]
    np.testing.assert_array_equal(reasons["reason_1_contribution"], [0.7, -0.3])
    np.testing.assert_array_equal(reasons["reason_2_contribution"], [0.2, 0.05])
    # A customer whose every contribution is negative gets reasons too, strongest first; ties in column order.
    low = reason_codes(np.array([[-0.4, -0.4, -0.9]]), features.iloc[:1], 3)
    assert low.loc[0, ["reason_1", "reason_2", "reason_3"]].tolist() == [
        "age=41 (-)", "visits=3 (-)", "device=mobile (-)"]
    zero = reason_codes(np.array([[0.0, 0.0, 0.0]]), features.iloc[:1], 1)
    assert zero.loc[0, "reason_1"] == "visits=3 (0)"
    assert len(reason_codes(values, features, 10).columns) == 6  # no more reasons than features
    assert list(empty_reasons(2).columns) == list(reasons.columns)


def test_the_mean_absolute_contributions_rank_the_features(fitted, test_table):
    features = test_table.drop(columns=["customer_id", LABEL])
    table = mean_absolute_contributions(fitted, features)
    assert sorted(table["feature"]) == sorted(features.columns)
    assert table["mean_abs_contribution"].is_monotonic_decreasing and (table["mean_abs_contribution"] >= 0).all()
    values, _ = contributions(fitted, features)
    top = table["feature"].iloc[0]
    assert table["mean_abs_contribution"].iloc[0] == pytest.approx(
        np.abs(values[:, list(features.columns).index(top)]).mean(), rel=1e-5)


def test_the_largest_contributions_are_a_stable_sorts_first_with_ties_in_column_order():
    rng = np.random.default_rng(3)
    values = rng.integers(-3, 4, (2000, 9)).astype(np.float64)   # many ties of size, either sign, and zeros
    values[:5] = 0.0
    values[5:10] = -0.0
    for count in (1, 3, 9):
        expected = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :count]
        assert np.array_equal(largest_by_size(values, count), expected)
    assert largest_by_size(np.zeros((0, 4)), 3).shape == (0, 3)
