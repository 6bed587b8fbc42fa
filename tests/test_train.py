"""train: LightGBM fits on the resampled split, bit for bit the same for the same inputs."""

from __future__ import annotations

import lightgbm
import numpy as np
import pytest

from stages import train
from stages.lib.files import load_object, write_json
from stages.lib.models import train_model
from stages.lib.schema import split_features
from stages.lib.tables import write_table
from tests.helpers import write_params

BEST = {"learning_rate": 0.1, "num_leaves": 15, "colsample_bytree": 0.7, "min_child_samples": 20}


@pytest.fixture
def resampled_xy(params, resampled_table):
    return split_features(resampled_table, params.data.id_columns)


def test_model_fits_with_the_given_params(params, resampled_xy, preprocessor):
    features, y = resampled_xy
    model = train_model(features, y, params, BEST)
    assert model.booster_.num_trees() == params.model.n_estimators
    assert model.booster_.feature_name() == list(preprocessor.feature_names_out_)
    assert model.get_params()["num_leaves"] == 15
    assert model.get_params()["random_state"] == params.base.seed
    probabilities = model.predict_proba(features)[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # It learned something: buyers score higher than non-buyers on the rows it saw.
    assert probabilities[y == 1].mean() > probabilities[y == 0].mean() + 0.2


def test_same_inputs_give_identical_boosters(params, resampled_xy):
    features, y = resampled_xy
    first = train_model(features, y, params, BEST).booster_.model_to_string()
    second = train_model(features, y, params, BEST).booster_.model_to_string()
    assert first == second


def test_plain_trees_do_not_depend_on_the_thread_count(params_with, resampled_xy):
    # Linear leaves (linear_tree) do, in the last bits: why model.threads is a fixed count by default.
    features, y = resampled_xy
    best = {"learning_rate": 0.05, "num_leaves": 16}
    texts = [train_model(features, y, params_with(model__threads=threads), best).booster_.model_to_string()
             for threads in (1, 2)]
    without_count = [[line for line in text.split("\n") if not line.startswith("[num_threads: ")] for text in texts]
    assert "[num_threads: 1]" in texts[0] and "[num_threads: 2]" in texts[1]  # recorded among the params ...
    assert without_count[0] == without_count[1]  # ... and nothing else differs


def test_another_seed_gives_another_booster(params, params_with, resampled_xy):
    features, y = resampled_xy
    first = train_model(features, y, params, BEST).booster_.model_to_string()
    other = params_with(base__seed=params.base.seed + 1)
    assert train_model(features, y, other, BEST).booster_.model_to_string() != first


def test_class_weight_turns_on_is_unbalance(params_with, train_table):
    params = params_with(resample__method="class_weight")
    features, y = split_features(train_table, params.data.id_columns)
    model = train_model(features, y, params, BEST)
    assert model.get_params()["is_unbalance"] is True
    plain = train_model(features, y, params_with(resample__method="none"), BEST)
    assert "is_unbalance" not in plain.get_params() or not plain.get_params()["is_unbalance"]
    # Weighting buyers up raises every score on this rare class.
    assert model.predict_proba(features)[:, 1].mean() > plain.predict_proba(features)[:, 1].mean()


def test_cli_writes_joblib_and_text_models_that_agree(tmp_path, raw_params, resampled_table, test_table, params):
    resampled_path = tmp_path / "resampled.parquet"
    write_table(resampled_table, resampled_path)
    write_json(BEST, tmp_path / "best.json")
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
