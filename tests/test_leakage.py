"""Leakage: the test split is never resampled, tuned, calibrated or fitted on; synthetic rows stay put.

Each proof watches the data itself (which customer IDs a model was fitted or
scored on, which files a stage opened), not just the code's intent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages import calibrate, preprocess, resample, train, tune
from stages.lib.core.files import write_json
from stages.lib.core.tables import read_table, write_table
from stages.lib.data.preprocessor import CustomerPreprocessor
from stages.lib.data.schema import LABEL, SYNTHETIC
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import generate_customers
from stages.lib.modeling.calibration import calibrate_and_choose
from stages.lib.modeling.estimators import LIGHTGBM, ChosenModel
from stages.lib.modeling.search import tune_hyperparameters
from tests.helpers import recipe_of, write_params

ID = "customer_id"
BEST = ChosenModel(LIGHTGBM, {"learning_rate": 0.1, "num_leaves": 15})


def _features_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in (ID, LABEL, SYNTHETIC) if c in frame.columns])


# --- resampling -------------------------------------------------------------------------------

def test_resampled_originals_are_exactly_the_training_split(train_table, resampled_table):
    originals = resampled_table[~resampled_table[SYNTHETIC]].drop(columns=SYNTHETIC).reset_index(drop=True)
    assert len(originals) == len(train_table)
    pd.testing.assert_frame_equal(_features_only(originals), _features_only(train_table))
    assert originals[ID].astype("int64").tolist() == train_table[ID].tolist()
    assert originals[LABEL].tolist() == train_table[LABEL].tolist()


def test_no_test_customer_in_the_resampled_table(train_table, test_table, resampled_table):
    ids = set(resampled_table[ID].dropna().astype("int64"))
    assert ids == set(train_table[ID])
    assert not ids & set(test_table[ID])


def test_no_resampled_row_copies_a_test_row(test_table, resampled_table):
    # A synthetic row built from test buyers would sit on or between them; none equals one.
    test_rows = set(map(tuple, _features_only(test_table).astype(str).to_numpy()))
    resampled_rows = map(tuple, _features_only(resampled_table).astype(str).to_numpy())
    assert not any(row in test_rows for row in resampled_rows)


# --- tuning ---------------------------------------------------------------------------------

def test_tuning_fits_and_scores_only_training_customers(engine, params, train_xy, test_table, fit_spy):
    features, y = train_xy
    tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    folds = params.tune.cv_folds
    assert len(fit_spy.pipeline_fits) == params.tune.n_iter * folds
    assert len(fit_spy.pipeline_scores) == params.tune.n_iter * folds
    seen = fit_spy.rows_seen()
    assert seen == set(features.index)  # every training customer, in some fold
    assert not seen & set(test_table[ID])


def test_no_synthetic_row_in_a_tuning_validation_fold(engine, params, train_xy, fit_spy):
    features, y = train_xy
    tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    assert len(fit_spy.pipeline_scores) == len(fit_spy.pipeline_fits) == params.tune.n_iter * params.tune.cv_folds
    for fitted, scored in zip(fit_spy.pipeline_fits, fit_spy.pipeline_scores):
        # Validation rows are original customers, with their original values, not in the training fold.
        assert set(scored.index) <= set(features.index)
        pd.testing.assert_frame_equal(scored, features.loc[scored.index])
        assert not set(scored.index) & set(fitted.index)
    # Resampling did happen inside each training fold: LightGBM got synthetic buyers on top of it.
    for (model_rows, model_y), fitted in zip(fit_spy.model_fits, fit_spy.pipeline_fits):
        assert len(model_rows) > len(fitted)
        assert int(model_y.sum()) > int(y[features.index.isin(fitted.index)].sum())


def test_tuning_on_a_resampled_table_would_be_caught(engine, params_with, resampled_table, fit_spy):
    """The check above can fail: fed the resampled table, validation folds do hold synthetic rows."""
    leaky = _features_only(resampled_table)
    synthetic = resampled_table[SYNTHETIC].to_numpy()
    params = params_with(resample__method="none")
    tune_hyperparameters(engine, leaky, resampled_table[LABEL].to_numpy(), recipe_of(params), params.tune)
    scored = set().union(*(set(s.index) for s in fit_spy.pipeline_scores))
    assert scored & set(leaky.index[synthetic])


# --- calibration and threshold -------------------------------------------------------------

def test_calibration_fits_and_scores_only_training_customers(engine, params, train_xy, test_table, fit_spy):
    features, y = train_xy
    calibrate_and_choose(engine, features, y, recipe_of(params), params.calibration, params.threshold, BEST)
    folds = params.calibration.cv_folds
    assert len(fit_spy.pipeline_fits) == folds and len(fit_spy.pipeline_scores) == folds
    seen = fit_spy.rows_seen()
    assert seen == set(features.index)
    assert not seen & set(test_table[ID])
    # Out of fold: every customer is scored once, by a model that did not see it.
    scored = pd.Index(np.concatenate([s.index.to_numpy() for s in fit_spy.pipeline_scores]))
    assert scored.is_unique and len(scored) == len(features)
    for fitted, scored_fold in zip(fit_spy.pipeline_fits, fit_spy.pipeline_scores):
        assert not set(fitted.index) & set(scored_fold.index)
        pd.testing.assert_frame_equal(scored_fold, features.loc[scored_fold.index])


def test_threshold_does_not_depend_on_the_test_split(engine, params, customers, train_table):
    """Change every test row: the chosen threshold, fitted on the training split only, stays."""
    test_ids = ~customers[ID].isin(train_table[ID])
    edited = customers.copy()
    edited.loc[test_ids, "basket_adds_30d"] = 50
    edited.loc[test_ids, "minutes_on_site"] = 0.0
    runs = []
    for frame in (customers, edited):
        train, _, _ = preprocess_customers(engine, frame, params.data, params.preprocess, params.base.seed)
        features, y = train.drop(columns=[ID, LABEL]), train[LABEL].to_numpy()
        runs.append(calibrate_and_choose(engine, features, y, recipe_of(params), params.calibration, params.threshold,
                                         BEST))
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == runs[1][2]


# --- whole stages on files: what each stage opens and writes -------------------------------

@pytest.fixture
def stage_files(tmp_path, raw_params, params, customers, true_probabilities):
    """Run generate's tables through the preprocess and resample CLIs, into tmp_path."""
    paths = {name: tmp_path / f"{name}.parquet" for name in ("raw", "train", "test", "resampled")}
    write_table(customers, tmp_path / "customers.csv")
    raw_params["data"]["path"] = str(tmp_path / "customers.csv")
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    preprocess.main(["--params", str(params_path), "--input", str(tmp_path / "customers.csv"),
                     "--train", str(paths["train"]), "--test", str(paths["test"]),
                     "--preprocessor", str(tmp_path / "preprocessor.joblib")])
    resample.main(["--params", str(params_path), "--train", str(paths["train"]),
                   "--output", str(paths["resampled"]), "--metrics", str(tmp_path / "resample.json")])
    return {"params": params_path, **paths, "dir": tmp_path}


def test_synthetic_rows_exist_only_in_the_resampled_file(stage_files, customers):
    train, test, resampled = (read_table(stage_files[k]) for k in ("train", "test", "resampled"))
    assert SYNTHETIC not in train.columns and SYNTHETIC not in test.columns
    assert resampled[SYNTHETIC].sum() > 0
    # Every row of the train and test files is a real customer with a label from the export.
    by_id = customers.set_index(ID)["purchased"]
    for table in (train, test):
        assert table[ID].notna().all() and table[ID].isin(customers[ID]).all()
        assert table[LABEL].tolist() == by_id.loc[table[ID]].tolist()
    assert len(train) + len(test) == len(customers)


def test_stages_after_preprocess_never_open_the_test_split(stage_files, read_spy):
    f = {k: str(v) for k, v in stage_files.items()}
    write_json(BEST.to_json(), stage_files["dir"] / "best.json")
    best = str(stage_files["dir"] / "best.json")
    runs = [
        (resample, ["--train", f["train"], "--output", f["dir"] + "/r2.parquet", "--metrics", f["dir"] + "/r.json"]),
        (tune, ["--train", f["train"], "--best-params", f["dir"] + "/b2.json", "--metrics", f["dir"] + "/t.json",
                "--trace", f["dir"] + "/trace.json"]),
        (calibrate, ["--train", f["train"], "--best-params", best, "--calibrator", f["dir"] + "/c.joblib",
                     "--threshold", f["dir"] + "/thr.json", "--metrics", f["dir"] + "/c.json",
                     "--threshold-curve", f["dir"] + "/curve.json", "--threshold-image", f["dir"] + "/curve.png"]),
        (train, ["--train", f["resampled"], "--best-params", best, "--model", f["dir"] + "/m.joblib",
                 "--model-text", f["dir"] + "/m.txt"]),
    ]
    for module, argv in runs:
        opened = read_spy(module)
        module.main(["--params", f["params"], *argv])
        assert f["test"] not in opened, module.__name__
        assert opened, module.__name__  # the spy saw the stage's reads


# --- preprocessing --------------------------------------------------------------------------

def test_preprocessor_is_fitted_on_training_rows_only(engine, params, customers, monkeypatch):
    # The preprocessor is fitted on statistics of rows (split._training_statistics): the numbers'
    # medians and gaps from numeric_block, the levels from category_counts. Record which customers they saw.
    from stages.lib.data import split

    numbers_of, levels_of = [], []
    original_block, original_counts = CustomerPreprocessor.numeric_block, split.category_counts

    def spied_block(self, frame, source):
        if source == "training data":
            numbers_of.append(frame[ID].tolist())
        return original_block(self, frame, source)

    def spied_counts(series):
        levels_of.append(customers.loc[series.index, ID].tolist())
        return original_counts(series)

    monkeypatch.setattr(CustomerPreprocessor, "numeric_block", spied_block)
    monkeypatch.setattr(split, "category_counts", spied_counts)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    assert numbers_of and levels_of
    for seen in numbers_of + levels_of:
        assert sorted(seen) == sorted(train[ID])
        assert not set(seen) & set(test[ID])


def test_test_rows_alone_cannot_move_the_training_table(engine, params_with):
    """The processed training split is a function of training rows alone."""
    params = params_with(generate__rows=3000)
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    edited = customers.copy()
    in_test = edited[ID].isin(test[ID])
    for column in ("age", "spend_12m", "email_open_rate"):
        edited.loc[in_test, column] = np.nan
    edited.loc[in_test, "device"] = "hologram"
    train_again, test_again, _ = preprocess_customers(engine, edited, params.data, params.preprocess, params.base.seed)
    pd.testing.assert_frame_equal(train_again, train)
    assert not test_again.equals(test)
