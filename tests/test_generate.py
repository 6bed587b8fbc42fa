"""generate: deterministic, realistic mess, a rare class at the asked rate, and no give-away column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.synthetic import ID_COLUMN, PROBABILITY_COLUMN, TARGET_COLUMN, generate_customers
from tests.helpers import recipe_of

ROWS = 5000


@pytest.fixture(scope="module")
def generated():
    return generate_customers(GenerateParams(rows=ROWS, purchase_rate=0.04), seed=7)


def test_same_seed_gives_identical_tables(generated):
    again = generate_customers(GenerateParams(rows=ROWS, purchase_rate=0.04), seed=7)
    pd.testing.assert_frame_equal(generated[0], again[0])
    pd.testing.assert_frame_equal(generated[1], again[1])


def test_another_seed_gives_other_customers(generated):
    other, other_probabilities = generate_customers(GenerateParams(rows=ROWS, purchase_rate=0.04), seed=8)
    customers = generated[0]
    assert list(other.columns) == list(customers.columns)
    assert not other["age"].equals(customers["age"])
    assert not other[TARGET_COLUMN].equals(customers[TARGET_COLUMN])
    assert not np.allclose(other_probabilities[PROBABILITY_COLUMN], generated[1][PROBABILITY_COLUMN])


def test_row_count_and_unique_ids(generated):
    customers, _ = generated
    assert len(customers) == ROWS
    assert customers[ID_COLUMN].is_unique
    assert customers[ID_COLUMN].notna().all()


@pytest.mark.parametrize("rate", [0.03, 0.04, 0.1])
def test_purchase_rate_follows_the_param(rate):
    customers, probabilities = generate_customers(GenerateParams(rows=20000, purchase_rate=rate), seed=3)
    # The intercept is solved so the mean true probability is the rate; the draws scatter
    # around it with a standard deviation of sqrt(rate (1 - rate) / rows) < 0.0022.
    assert probabilities[PROBABILITY_COLUMN].mean() == pytest.approx(rate, abs=1e-4)
    assert customers[TARGET_COLUMN].mean() == pytest.approx(rate, abs=0.009)
    assert set(customers[TARGET_COLUMN].unique()) == {0, 1}


def test_missing_values_in_several_columns(generated):
    customers, _ = generated
    with_gaps = [c for c in customers.columns if customers[c].isna().any()]
    assert len(with_gaps) >= 4, with_gaps
    # Both numeric and text columns have gaps, as in a real export.
    assert any(pd.api.types.is_numeric_dtype(customers[c]) for c in with_gaps)
    assert any(pd.api.types.is_string_dtype(customers[c]) for c in with_gaps)
    assert customers[[ID_COLUMN, TARGET_COLUMN]].notna().all().all()


def test_string_categoricals_with_rare_levels(generated):
    customers, _ = generated
    text_columns = [c for c in customers.columns if pd.api.types.is_string_dtype(customers[c])]
    assert {"gender", "region", "income_band", "device", "traffic_source"} <= set(text_columns)
    rare = {}
    for column in text_columns:
        counts = customers[column].value_counts()
        rare.update({(column, level): n for level, n in counts.items() if n < 0.005 * ROWS})
    # Levels below 0.5 % of customers, several below the preprocessor's default minimum count of 10.
    assert len(rare) >= 3, rare
    assert sum(n < 10 for n in rare.values()) >= 1, rare


def test_true_probabilities_are_aligned_to_ids(generated):
    customers, probabilities = generated
    assert list(probabilities.columns) == [ID_COLUMN, PROBABILITY_COLUMN]
    assert probabilities[ID_COLUMN].tolist() == customers[ID_COLUMN].tolist()
    p = probabilities[PROBABILITY_COLUMN].to_numpy()
    assert np.all((p > 0) & (p < 1))
    # Aligned rows: the probability predicts the label of the same customer, and its
    # sum forecasts the buyers; after shuffling the IDs it would not.
    y = customers[TARGET_COLUMN].to_numpy()
    assert roc_auc_score(y, p) > 0.75
    shuffled = np.random.default_rng(0).permutation(p)
    assert abs(roc_auc_score(y, shuffled) - 0.5) < 0.07
    assert p.sum() == pytest.approx(y.sum(), rel=0.15)


def test_true_probabilities_not_in_the_customer_table(generated):
    customers, _ = generated
    assert PROBABILITY_COLUMN not in customers.columns


def _single_column_auc(series: pd.Series, y: np.ndarray) -> float:
    """ROC AUC of one column used alone, in whichever direction ranks better."""
    if pd.api.types.is_numeric_dtype(series):
        score = series.fillna(series.median()).to_numpy(float)
    else:
        # A categorical ranks customers by its level's purchase rate (in sample, so optimistic).
        level = series.fillna("__missing__")
        score = level.map(pd.Series(y, index=series.index).groupby(level).mean()).to_numpy(float)
    auc = roc_auc_score(y, score)
    return max(auc, 1 - auc)


def test_no_single_column_ranks_better_than_the_true_probability(generated):
    customers, probabilities = generated
    y = customers[TARGET_COLUMN].to_numpy()
    ideal = roc_auc_score(y, probabilities[PROBABILITY_COLUMN])
    features = [c for c in customers.columns if c not in (ID_COLUMN, TARGET_COLUMN)]
    aucs = {c: _single_column_auc(customers[c], y) for c in features}
    best_column = max(aucs, key=aucs.get)
    assert aucs[best_column] < ideal, (best_column, aucs[best_column], ideal)
    # ...by a clear margin: no column gives the answer away.
    assert aucs[best_column] < ideal - 0.05, (best_column, aucs[best_column], ideal)
    # The signal exists: several columns rank customers better than chance.
    assert sum(auc > 0.6 for auc in aucs.values()) >= 3



@pytest.mark.parametrize("truth", ["nonlinear", "linear"])
def test_lightgbm_comes_close_to_the_ideal_scorer_under_either_truth(engine, truth):
    from sklearn.metrics import average_precision_score

    from stages.lib.core.params import parse_params
    from stages.lib.data.schema import split_features
    from stages.lib.data.split import preprocess_customers
    from stages.lib.modeling.estimators import train_model
    from tests.helpers import edited_params

    # 60,000 customers (12,000 test customers): at 20,000 one split in three falls below 0.8 by chance.
    params = parse_params(edited_params({"generate.rows": 60000, "generate.truth": truth,
                                         "resample.method": "none", "model.n_estimators": 300}))
    customers, truth_table = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    tuned = {"learning_rate": 0.03, "num_leaves": 8, "min_child_samples": 100}
    model, _ = train_model(engine, train, recipe_of(params), params.data.id_columns, tuned)
    test_features, test_y = split_features(test, params.data.id_columns)
    ideal = test[[ID_COLUMN]].merge(truth_table, on=ID_COLUMN)[PROBABILITY_COLUMN].to_numpy()
    ratio = (average_precision_score(test_y, model.predict_proba(test_features)[:, 1])
             / average_precision_score(test_y, ideal))
    assert ratio >= 0.8, ratio


def test_the_linear_truth_is_a_logistic_model_of_exported_columns():
    customers, truth = generate_customers(GenerateParams(rows=5000, purchase_rate=0.05, truth="linear"), seed=3)
    columns = ["basket_adds_30d", "checked_delivery_details", "saw_checkout", "orders_12m", "loyalty_member",
               "promo_clicks_30d", "days_since_last_visit"]
    logit = np.log(truth[PROBABILITY_COLUMN] / (1 - truth[PROBABILITY_COLUMN])).to_numpy()
    design = np.column_stack([customers[columns].to_numpy(float), np.ones(len(customers))])
    coefficients, residual, *_ = np.linalg.lstsq(design, logit, rcond=None)
    assert np.allclose(design @ coefficients, logit, atol=1e-8)  # exactly linear in these columns
    nonlinear = generate_customers(GenerateParams(rows=5000, purchase_rate=0.05), seed=3)[1]
    other = np.log(nonlinear[PROBABILITY_COLUMN] / (1 - nonlinear[PROBABILITY_COLUMN])).to_numpy()
    fitted = design @ np.linalg.lstsq(design, other, rcond=None)[0]
    assert not np.allclose(fitted, other, atol=0.1)  # the default truth is not
