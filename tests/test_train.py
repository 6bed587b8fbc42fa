"""train: LightGBM fits on the resampled split, bit for bit the same for the same inputs."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest

from stages import train
from stages.lib.core.files import load_object, write_json
from stages.lib.core.tables import write_table
from stages.lib.data.schema import split_features
from stages.lib.modeling.estimators import train_model
from tests.helpers import recipe_of, write_params

BEST = {"learning_rate": 0.1, "num_leaves": 15, "colsample_bytree": 0.7, "min_child_samples": 20}


@pytest.fixture
def resampled_xy(params, resampled_table):
    return split_features(resampled_table, params.data.id_columns)


def fitted(engine, table, params, best):
    model, rows = train_model(engine, table, recipe_of(params), params.data.id_columns, best)
    assert rows == len(table)
    return model


def test_model_fits_with_the_given_params(engine, params, resampled_table, resampled_xy, preprocessor):
    features, y = resampled_xy
    model = fitted(engine, resampled_table, params, BEST)
    assert model.booster_.num_trees() == params.model.n_estimators
    assert model.booster_.feature_name() == list(preprocessor.feature_names_out_)
    assert model.get_params()["num_leaves"] == 15
    assert model.get_params()["random_state"] == params.base.seed
    probabilities = model.predict_proba(features)[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # It learned something: buyers score higher than non-buyers on the rows it saw.
    assert probabilities[y == 1].mean() > probabilities[y == 0].mean() + 0.2


def test_same_inputs_give_identical_boosters(engine, params, resampled_table):
    first = fitted(engine, resampled_table, params, BEST).booster_.model_to_string()
    second = fitted(engine, resampled_table, params, BEST).booster_.model_to_string()
    assert first == second


def booster_texts(params, table, best, thread_counts) -> list[list[str]]:
    """The boosters of one fit per thread count, less the line that records the count."""
    features, y = split_features(table, params.data.id_columns)
    texts = []
    for threads in thread_counts:
        text = recipe_of(params).classifier(threads, best).fit(features, y).booster_.model_to_string()
        assert f"[num_threads: {threads}]" in text  # LightGBM records the count among the params ...
        texts.append([line for line in text.split("\n") if not line.startswith("[num_threads: ")])
    return texts


@pytest.mark.parametrize("best", [{"learning_rate": 0.05, "num_leaves": 16},
                                  {"learning_rate": 0.1, "num_leaves": 31, "colsample_bytree": 0.3,
                                   "min_child_samples": 5, "reg_lambda": 0.01}])
def test_plain_trees_do_not_depend_on_the_thread_count(params, resampled_table, best):
    # Why model.threads: auto may follow the machine: the same trees with 1, 2 or 3 threads in a fit.
    texts = booster_texts(params, resampled_table, best, (1, 2, 3))
    assert texts[0] == texts[1] == texts[2]  # ... and nothing else differs


def test_linear_leaves_do_depend_on_the_thread_count(params, resampled_table):
    # Why params.py refuses linear_tree with model.threads: auto.
    texts = booster_texts(params, resampled_table, {"learning_rate": 0.05, "num_leaves": 8, "linear_tree": True},
                          (1, 2))
    assert texts[0] != texts[1]


def test_the_trained_model_records_nothing_of_the_machine(engine, params_with, resampled_table):
    # model.txt and model.joblib are the same bytes whatever thread count the fit used.
    texts = [fitted(engine, resampled_table, params_with(model__threads=threads), BEST).booster_.model_to_string()
             for threads in (1, 2)]
    assert texts[0] == texts[1]
    assert "[num_threads: " not in texts[0]


def test_another_seed_gives_another_booster(engine, params, params_with, resampled_table):
    first = fitted(engine, resampled_table, params, BEST).booster_.model_to_string()
    other = params_with(base__seed=params.base.seed + 1)
    assert fitted(engine, resampled_table, other, BEST).booster_.model_to_string() != first


def test_class_weight_turns_on_is_unbalance(engine, params_with, train_table):
    params = params_with(resample__method="class_weight")
    features, y = split_features(train_table, params.data.id_columns)
    model = fitted(engine, train_table, params, BEST)
    assert model.get_params()["is_unbalance"] is True
    plain = fitted(engine, train_table, params_with(resample__method="none"), BEST)
    assert "is_unbalance" not in plain.get_params() or not plain.get_params()["is_unbalance"]
    # Weighting buyers up raises every score on this rare class.
    assert model.predict_proba(features)[:, 1].mean() > plain.predict_proba(features)[:, 1].mean()


def test_cli_writes_joblib_and_text_models_that_agree(tmp_path, raw_params, resampled_table, test_table, params):
    resampled_path = tmp_path / "resampled.parquet"
    write_table(resampled_table, resampled_path)
    write_json({"family": "lightgbm", "params": BEST}, tmp_path / "best.json")
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    train.main(["--params", str(params_path), "--train", str(resampled_path),
                "--best-params", str(tmp_path / "best.json"),
                "--model", str(tmp_path / "model.joblib"), "--model-text", str(tmp_path / "model.txt")])
    model = load_object(tmp_path / "model.joblib")
    text_model = lightgbm.Booster(model_file=str(tmp_path / "model.txt"))
    features, _ = split_features(test_table, params.data.id_columns)
    np.testing.assert_allclose(text_model.predict(features), model.predict_proba(features)[:, 1], rtol=1e-12)
    # The synthetic flag, label and IDs are not features.
    assert "__synthetic__" not in text_model.feature_name()
    assert "customer_id" not in text_model.feature_name()
