"""model.family: which model ships, chosen honestly, and either family through every later stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import Booster, LGBMClassifier
from threadpoolctl import threadpool_limits

from stages.lib.core.errors import ArtifactError
from stages.lib.data.examples import three_column_table
from stages.lib.data.schema import LABEL
from stages.lib.evaluation import plot_data
from stages.lib.modeling.calibration import calibrate_and_choose
from stages.lib.modeling.estimators import LIGHTGBM, LOGISTIC_REGRESSION, ChosenModel, model_text, train_model
from stages.lib.modeling.family import (
    COMPARISON_FOLDS,
    COMPARISON_REPEATS,
    FamilyComparison,
    choose_model,
    comparison_seed,
)
from stages.lib.modeling.linear import INTERCEPT, coefficients
from stages.lib.scoring.scorer import Scorer
from tests.helpers import recipe_of

# Enough search and trees for LightGBM to show what it can do on a few thousand rows, in seconds.
CHOOSING = {"model__family": "auto", "resample__method": "none", "tune__n_iter": 4, "tune__cv_folds": 3,
            "model__n_estimators": 60}


def interaction_table(rows: int = 4000, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Buyers where two columns have the same sign and one is large: no line separates them."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["visits", "recency", "noise"])
    log_odds = -4.0 + 4.0 * ((features["visits"] * features["recency"] > 0) & (features["visits"].abs() > 0.8))
    y = (rng.random(rows) < 1 / (1 + np.exp(-log_odds))).astype(np.int8)
    return features, y.to_numpy()


@pytest.mark.parametrize(("lightgbm", "linear", "ships"), [
    ([0.50, 0.52, 0.51, 0.53], [0.40, 0.41, 0.42, 0.40], LIGHTGBM),             # wins by far more than its noise
    ([0.50, 0.40, 0.60, 0.45], [0.48, 0.45, 0.52, 0.47], LOGISTIC_REGRESSION),  # ahead on average, within noise
    ([0.40, 0.41, 0.42, 0.40], [0.50, 0.52, 0.51, 0.53], LOGISTIC_REGRESSION),  # behind
    ([0.50, 0.50, 0.50, 0.50], [0.50, 0.50, 0.50, 0.50], LOGISTIC_REGRESSION),  # a tie: the simpler model
])
def test_lightgbm_ships_only_when_it_wins_by_more_than_one_standard_error(lightgbm, linear, ships):
    comparison = FamilyComparison(lightgbm, linear, seed=1)
    differences = np.subtract(lightgbm, linear)
    assert comparison.difference == pytest.approx(differences.mean())
    assert comparison.standard_error == pytest.approx(differences.std(ddof=1) / np.sqrt(len(differences)))
    assert comparison.choice == ships


def test_auto_ships_the_logistic_regression_when_the_log_odds_are_linear(engine, params_with):
    table = three_column_table(4000)
    features, y = table[["visits", "noise_a", "noise_b"]], table["purchased"].to_numpy()
    params = params_with(**CHOOSING)
    choice = choose_model(engine, features, y, recipe_of(params), params.tune)
    assert choice.chosen == ChosenModel(LOGISTIC_REGRESSION, {"C": choice.linear.C})
    assert choice.comparison.difference <= choice.comparison.standard_error
    assert len(choice.comparison.lightgbm) == len(choice.comparison.logistic_regression) \
        == COMPARISON_FOLDS * COMPARISON_REPEATS


def test_auto_ships_lightgbm_when_no_line_separates_the_buyers(engine, params_with):
    features, y = interaction_table()
    params = params_with(**CHOOSING)
    choice = choose_model(engine, features, y, recipe_of(params), params.tune)
    assert choice.chosen == ChosenModel(LIGHTGBM, choice.search.best_params)
    assert choice.comparison.difference > choice.comparison.standard_error > 0


def test_the_comparison_is_on_fresh_folds_not_the_searchs(params):
    assert comparison_seed(params.base.seed) != params.base.seed
    assert comparison_seed(params.base.seed) == comparison_seed(params.base.seed)
    assert comparison_seed(params.base.seed) != comparison_seed(params.base.seed + 1)


@pytest.mark.parametrize("family", [LIGHTGBM, LOGISTIC_REGRESSION])
def test_a_family_set_by_hand_is_the_only_one_tuned(engine, params_with, train_xy, family):
    features, y = train_xy
    params = params_with(model__family=family)
    choice = choose_model(engine, features, y, recipe_of(params), params.tune)
    assert choice.chosen.family == family and choice.comparison is None
    assert (choice.search is None) == (family == LOGISTIC_REGRESSION)
    assert (choice.linear is None) == (family == LIGHTGBM)
    if family == LOGISTIC_REGRESSION:
        assert [row["C"] for row in choice.trace] == list(choice.linear.scores)
        assert choice.trace[-1]["best_so_far"] == choice.linear.best_score


def test_an_old_best_params_file_is_refused_in_one_line():
    with pytest.raises(ArtifactError) as error:
        ChosenModel.from_json({"num_leaves": 8}, "models/best_params.json")
    assert "\n" not in str(error.value) and "dvc repro tune" in str(error.value)


def test_a_logistic_regression_calibrates_trains_explains_and_scores(engine, params, train_xy, resampled_table,
                                                                     test_table):
    features, y = train_xy
    chosen = ChosenModel(LOGISTIC_REGRESSION, {"C": 0.1})
    calibrator, threshold, report, _ = calibrate_and_choose(engine, features, y, recipe_of(params), params.calibration,
                                                            params.threshold, chosen)
    assert 0 < threshold.probability < 1 and report["oof_average_precision"] > y.mean()
    model, rows = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, chosen.params,
                              chosen.family)
    assert rows == len(resampled_table) and not isinstance(model, LGBMClassifier)
    assert model.named_steps["classifier"].C == 0.1
    table = coefficients(model)
    assert table["term"].iloc[0] == INTERCEPT and "age" in set(table["term"])
    assert any(term.startswith("region=") for term in table["term"])
    text = model_text(model)
    assert text.startswith("logistic regression") and "(intercept)" in text and "reference levels: " in text
    importance, measure = plot_data.feature_importance(model)
    assert set(importance["feature"]) == set(table["term"].iloc[1:]) and "coefficient" in measure
    assert importance["importance"].is_monotonic_decreasing
    test_features = test_table.drop(columns=["customer_id", LABEL])
    probability, raw = Scorer(None, model, calibrator, threshold, threads=4).scores_of(test_features)
    np.testing.assert_array_equal(raw, model.predict_proba(test_features)[:, 1])
    assert probability.shape == raw.shape and np.all((probability >= 0) & (probability <= 1))


def test_a_logistic_regression_is_the_same_bits_with_any_blas_threads(params, resampled_table, test_table, engine):
    test_features = test_table.drop(columns=["customer_id", LABEL])
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            model, _ = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, {"C": 0.3},
                                   LOGISTIC_REGRESSION)
            fits.append((model_text(model), model.predict_proba(test_features)[:, 1].tobytes()))
    assert fits[0] == fits[1]


def test_a_lightgbm_model_text_loads_as_the_same_model(engine, params, resampled_table, test_table):
    model, _ = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, {"num_leaves": 8})
    test_features = test_table.drop(columns=["customer_id", LABEL])
    np.testing.assert_array_equal(Booster(model_str=model_text(model)).predict(test_features),
                                  model.predict_proba(test_features)[:, 1])
