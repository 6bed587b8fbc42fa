"""One algorithm, two engines: the Dask engine computes exactly what the local engine computes.

The same table and base.seed give the same test customers, the same preprocessor,
the same samples, the same search and the same scores on either engine, however
the table is cut into files. Here the Dask engine runs on a small cluster in this
process (threads); test_dask_cluster.py runs the stages on worker processes. The
final fit is the one thing that differs (lightgbm.dask trains data-parallel): it
is compared there.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError
from stages.lib.core.params import parse_params
from stages.lib.core.tables import read_table
from stages.lib.data import sampling, split
from stages.lib.data.examples import parquet_parts_of
from stages.lib.data.schema import LABEL, SNAPSHOT, split_features
from stages.lib.data.synthetic import generate_customers
from stages.lib.engines.dask.engine import DaskEngine
from stages.lib.engines.local.engine import LocalEngine
from stages.lib.evaluation.baselines import fit_baselines
from stages.lib.modeling.calibrator import ProbabilityCalibrator
from stages.lib.modeling.estimators import LOGISTIC_REGRESSION, model_text, train_model
from stages.lib.modeling.family import choose_model
from stages.lib.modeling.folds import out_of_fold_scores
from stages.lib.modeling.ranking import Threshold
from stages.lib.modeling.resampling import resample_split
from stages.lib.modeling.search import tune_hyperparameters
from stages.lib.scoring.batches import score_held_out
from stages.lib.scoring.scorer import Scorer
from tests.helpers import DATED, edited_params, local_dask_engine, recipe_of

pytestmark = pytest.mark.dask

ID = "customer_id"


@pytest.fixture(scope="module")
def dask_engine():
    with local_dask_engine(processes=False) as engine:
        yield engine


def preprocessed(engine, table, params, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    counts, _, preprocessor = split.preprocess_table(engine, table, params.data, params.preprocess,
                                                          params.base.seed, folder / "train.parquet",
                                                          folder / "test.parquet")
    train, test = read_table(folder / "train.parquet"), read_table(folder / "test.parquet")
    assert (counts.train_rows, counts.train_buyers, counts.test_rows) == (len(train), train[LABEL].sum(), len(test))
    return preprocessor, train, test


@pytest.mark.parametrize("parts", [1, 3, 5])
def test_both_engines_split_and_preprocess_alike_however_the_table_is_cut(customers, params, dask_engine, tmp_path,
                                                                           parts):
    csv = tmp_path / "customers.csv"
    customers.to_csv(csv, index=False)
    local = preprocessed(LocalEngine(1), csv, params, tmp_path / "local")
    source = csv if parts == 1 else parquet_parts_of(customers, tmp_path / "parts", parts)
    on_dask = preprocessed(dask_engine, source, params, tmp_path / "dask")
    assert pickle.dumps(on_dask[0]) == pickle.dumps(local[0])  # the same preprocessor, to the byte
    pd.testing.assert_frame_equal(on_dask[1], local[1])
    pd.testing.assert_frame_equal(on_dask[2], local[2])
    # The Dask engine writes one file per input file, the local engine one file.
    assert (tmp_path / "local" / "train.parquet").is_file()
    assert len(list((tmp_path / "dask" / "train.parquet").iterdir())) == parts


def test_both_engines_split_a_dated_table_out_of_time_alike(dask_engine, tmp_path):
    """The dates of each side are found from counts the partitions add up: the same test customers, dates and
    preprocessor from a CSV in this process as from parquet files on the cluster."""
    params = parse_params(edited_params({**DATED, "generate.rows": 4000}))
    customers, _ = generate_customers(params.generate, params.base.seed)
    csv = tmp_path / "customers.csv"
    customers.to_csv(csv, index=False)
    local = preprocessed(LocalEngine(1), csv, params, tmp_path / "local")
    on_dask = preprocessed(dask_engine, parquet_parts_of(customers, tmp_path / "parts", 3), params, tmp_path / "dask")
    assert pickle.dumps(on_dask[0]) == pickle.dumps(local[0])
    for ours, theirs in zip(on_dask[1:], local[1:]):
        pd.testing.assert_frame_equal(ours, theirs)
    assert local[2][SNAPSHOT].nunique() == 1 and local[1][SNAPSHOT].max() < local[2][SNAPSHOT].min()


def test_repeated_ids_keep_their_first_row_across_partitions(engine, customers, params, dask_engine, tmp_path, capsys):
    # 30 customers appear again at the end of the table (in another partition), with other values.
    repeats = customers.head(30).assign(age=999.0)
    table = pd.concat([customers, repeats], ignore_index=True)
    local = split.preprocess_customers(engine, table, params.data, params.preprocess, params.base.seed)
    assert "dropped 30 rows" in capsys.readouterr().err
    parts = parquet_parts_of(table, tmp_path / "parts", 3)
    _, train, test = preprocessed(dask_engine, parts, params, tmp_path / "dask")
    assert "dropped 30 rows" in capsys.readouterr().err
    written = pd.concat([train, test])
    assert len(written) == len(customers) and written[ID].is_unique
    assert 999.0 not in written["age"].to_numpy()
    pd.testing.assert_frame_equal(train, local[0])


def test_the_medians_are_exact_for_any_values(engine, params, dask_engine, tmp_path):
    rng = np.random.default_rng(3)
    rows = 1001
    columns = {
        "negative_and_positive": rng.normal(size=rows).astype(np.float32) * 1e3,
        "few_levels": rng.integers(-2, 3, size=rows).astype(np.float32),
        "signed_zeros": np.where(rng.random(rows) < 0.5, np.float32(-0.0), np.float32(0.0)),
        "gaps": np.where(rng.random(rows) < 0.3, np.nan, rng.exponential(size=rows)).astype(np.float32),
        "nothing_in_training": np.where(rng.random(rows) < 2, np.nan, 1.0).astype(np.float32),
    }
    frame = pd.DataFrame({ID: np.arange(rows), **columns, "level": "a",
                          "purchased": (rng.random(rows) < 0.1).astype(int)})
    frame.loc[0, "nothing_in_training"] = 5.0  # one value, so the column is not empty; it may fall in training
    data = params.data.model_copy(update={"categorical_columns": ["level"]})
    params = params.model_copy(update={"data": data})
    local = split.preprocess_customers(engine, frame, data, params.preprocess, params.base.seed)
    training = frame[frame[ID].isin(local[0][ID])]
    expected = {c: float(training[c].median()) for c in columns}
    on_dask, _, _ = preprocessed(dask_engine, parquet_parts_of(frame, tmp_path / "parts", 4), params, tmp_path / "dask")
    for medians in (local[2].medians_, on_dask.medians_):
        assert {c: v for c, v in medians.items() if not np.isnan(v)} == \
            {c: v for c, v in expected.items() if not np.isnan(v)}
        assert [c for c, v in medians.items() if np.isnan(v)] == [c for c, v in expected.items() if np.isnan(v)]


@pytest.mark.parametrize("break_table", [
    lambda frame: frame.assign(purchased=frame["purchased"].where(frame.index < len(frame) - 5)),  # last file
    lambda frame: frame.assign(purchased=0),
    lambda frame: frame.assign(age=np.nan),
    lambda frame: frame.assign(age=frame["age"].astype(str).where(frame.index > 10, "unknown")),
    lambda frame: frame.drop(columns="region"),
])
def test_a_bad_table_gives_the_same_error_on_either_engine(customers, params, dask_engine, tmp_path, break_table):
    table = break_table(customers)
    folder = parquet_parts_of(table, tmp_path / "parts", 3)
    with pytest.raises(DataError) as local:
        preprocessed(LocalEngine(1), folder, params, tmp_path / "local")
    with pytest.raises(DataError) as on_dask:
        preprocessed(dask_engine, folder, params, tmp_path / "dask")
    assert str(on_dask.value) == str(local.value)
    assert not (tmp_path / "dask" / "train.parquet").exists()


def test_a_column_empty_in_one_partition_only_is_fine(customers, params, dask_engine, tmp_path):
    table = customers.assign(age=customers["age"].where(customers.index >= len(customers) // 3))
    fitted, _, _ = preprocessed(dask_engine, parquet_parts_of(table, tmp_path / "parts", 3), params, tmp_path / "dask")
    assert "age" in fitted.indicator_columns_


def test_samples_are_the_same_on_either_engine_and_never_gather_the_split(train_table, dask_engine, tmp_path,
                                                                           monkeypatch):
    folder = parquet_parts_of(train_table, tmp_path / "train.parquet", 4)
    local = sampling.sample_table(LocalEngine(1), train_table, 1000, seed=7)
    monkeypatch.setattr(DaskEngine, "gather", lambda *args, **kwargs: pytest.fail("gathered the whole split"))
    pd.testing.assert_frame_equal(sampling.sample_table(dask_engine, folder, 1000, seed=7), local)


@pytest.mark.parametrize("method", ["none", "class_weight"])
def test_resampling_partition_by_partition_equals_the_local_engine(train_table, params_with, dask_engine, tmp_path,
                                                                   method):
    resample = params_with(resample__method=method).resample
    whole = tmp_path / "train.parquet"
    train_table.to_parquet(whole, index=False)
    local_report = resample_split(LocalEngine(1), whole, tmp_path / "local.parquet", resample, 42, [ID])
    folder = parquet_parts_of(train_table, tmp_path / "parts", 3)
    report = resample_split(dask_engine, folder, tmp_path / "dask.parquet", resample, 42, [ID])
    assert sorted(p.name for p in (tmp_path / "dask.parquet").iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    pd.testing.assert_frame_equal(read_table(tmp_path / "dask.parquet"), read_table(tmp_path / "local.parquet"))
    assert report == local_report


def test_the_search_is_the_same_on_either_engine(params_with, train_xy, dask_engine):
    # BayesSearchCV's cross-validation fits through joblib's Dask backend: the same search, bit for bit.
    features, y = train_xy
    params = params_with(tune__n_iter=3, tune__n_points=2)
    local = tune_hyperparameters(LocalEngine(2), features, y, recipe_of(params), params.tune)
    on_dask = tune_hyperparameters(dask_engine, features, y, recipe_of(params), params.tune)
    assert (on_dask.best_params, on_dask.best_score, on_dask.trace, on_dask.rows) == \
        (local.best_params, local.best_score, local.trace, local.rows)


def test_the_family_choice_is_the_same_on_either_engine(params_with, train_xy, dask_engine):
    # model.family auto: the search, the logistic regression's grid and the fresh-fold comparison.
    features, y = train_xy
    params = params_with(model__family="auto", tune__n_iter=2)
    on_dask = choose_model(dask_engine, features, y, recipe_of(params), params.tune)
    assert on_dask == choose_model(LocalEngine(2), features, y, recipe_of(params), params.tune)


def test_a_logistic_regression_is_the_same_trained_on_either_engine(engine, params, resampled_table, dask_engine,
                                                                   tmp_path):
    parts = parquet_parts_of(resampled_table, tmp_path / "train", 3)
    local, rows = train_model(engine, resampled_table, recipe_of(params), params.data.id_columns, {"C": 0.1},
                              LOGISTIC_REGRESSION)
    on_dask, dask_rows = train_model(dask_engine, parts, recipe_of(params), params.data.id_columns, {"C": 0.1},
                                     LOGISTIC_REGRESSION)
    assert rows == dask_rows and model_text(on_dask) == model_text(local)


def test_out_of_fold_scores_and_baselines_are_the_same_on_either_engine(params, train_xy, dask_engine):
    features, y = train_xy
    best = {"learning_rate": 0.1, "num_leaves": 15}
    np.testing.assert_array_equal(out_of_fold_scores(dask_engine, features, y, recipe_of(params),
                                                     params.calibration.cv_folds, best),
                                  out_of_fold_scores(LocalEngine(2), features, y, recipe_of(params),
                                                     params.calibration.cv_folds, best))
    local = fit_baselines(LocalEngine(2), features, y, 42, params.model.threads)
    on_dask = fit_baselines(dask_engine, features, y, 42, params.model.threads)
    for name, model in local.items():
        np.testing.assert_array_equal(on_dask[name].predict_proba(features), model.predict_proba(features))


def test_the_test_split_is_scored_alike_partition_by_partition(engine, params, train_table, test_table,
                                                              preprocessor, dask_engine, tmp_path):
    model, _ = train_model(engine, train_table, recipe_of(params), params.data.id_columns, {"num_leaves": 8})
    features, y = split_features(train_table, [ID])
    calibrator = ProbabilityCalibrator("isotonic").fit(model.predict_proba(features)[:, 1], y)
    baselines = fit_baselines(engine, features, y, 42, params.model.threads)
    whole = tmp_path / "test.parquet"
    test_table.to_parquet(whole, index=False)
    scorer = Scorer(preprocessor, model, calibrator, Threshold(0.5), baselines=baselines)
    local = score_held_out(LocalEngine(1), whole, scorer, [ID])
    on_dask = score_held_out(dask_engine, parquet_parts_of(test_table, tmp_path / "test", 3), scorer, [ID])
    for feature, counts in local.drift.items():
        np.testing.assert_array_equal(on_dask.drift[feature], counts)
    for name in ("y", "probability", "raw"):
        np.testing.assert_array_equal(getattr(on_dask, name), getattr(local, name))
    pd.testing.assert_frame_equal(on_dask.ids, local.ids)
    assert on_dask.baselines.keys() == local.baselines.keys()
    for name in local.baselines:
        np.testing.assert_array_equal(on_dask.baselines[name], local.baselines[name])
