"""compute.engine dask on partitioned tables: preprocess, resample, and tune's and calibrate's samples.

Preprocess checks, splits and transforms a directory of parquet files on a Dask
cluster. Its split is its own (a hash of each customer's ID and the seed), so these
tests compare it with the local engine on the same training rows: the fitted
preprocessor and every written value must be the local engine's. Training on
partitioned files is in test_compute.py (LightGBM's network needs worker processes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib import preprocessing
from stages.lib.errors import DataError
from stages.lib.features import CustomerPreprocessor
from stages.lib.preprocessing import IN_TEST, preprocess_on_dask
from stages.lib.schema import LABEL, check_training_table
from stages.lib.tables import read_table

ID = "customer_id"


@pytest.fixture(scope="module")
def dask_client():
    """A small Dask cluster in this process (threads): what a stage's dask_client() hands out."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        yield client


def parts_of(frame: pd.DataFrame, folder: Path, parts: int) -> Path:
    """`frame` as `parts` parquet files whose name order is row order."""
    folder.mkdir(parents=True)
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"customers-{number:02d}.parquet", index=False)
    return folder


def run_on_dask(frame, params, client, folder: Path, parts: int = 3):
    source = parts_of(frame, folder / "input", parts)
    counts, preprocessor = preprocess_on_dask(str(source), params.data, params.preprocess, params.base.seed,
                                              str(folder / "train.parquet"), str(folder / "test.parquet"), client)
    return counts, preprocessor, read_table(folder / "train.parquet"), read_table(folder / "test.parquet")


def test_the_dask_engine_fits_and_transforms_as_the_local_engine_on_the_same_rows(customers, params, dask_client,
                                                                                  tmp_path):
    counts, fitted, train, test = run_on_dask(customers, params, dask_client, tmp_path)
    assert (counts.train_rows, counts.train_buyers, counts.test_rows) == (len(train), train[LABEL].sum(), len(test))
    # Every customer on exactly one side; the test share is test_size within sampling error.
    assert not set(train[ID]) & set(test[ID])
    assert sorted([*train[ID], *test[ID]]) == sorted(customers[ID])
    assert abs(len(test) / len(customers) - params.preprocess.test_size) < 0.03
    # Fitted on the training rows only: exactly what the local engine fits on those rows.
    raw = customers.set_index(ID)
    raw_train = raw.loc[train[ID]].reset_index()
    schema = check_training_table(customers, params.data, "customers")
    local = CustomerPreprocessor.for_schema(schema, params.preprocess.rare_category_min_count).fit(raw_train)
    assert fitted.medians_ == local.medians_
    assert fitted.levels_ == local.levels_
    assert fitted.indicator_columns_ == local.indicator_columns_ and fitted.indicator_columns_
    # The written rows: the local transform of the same raw rows, in input order, with their labels.
    for written in (train, test):
        rows = raw.loc[written[ID]].reset_index()
        assert written[ID].is_monotonic_increasing == customers[ID].is_monotonic_increasing
        expected = local.transform(rows).reset_index(drop=True)
        pd.testing.assert_frame_equal(written[expected.columns], expected)
        assert written[LABEL].tolist() == rows[params.data.target].astype(int).tolist()


def test_the_dask_split_does_not_depend_on_how_the_table_is_cut(customers, params, dask_client, tmp_path):
    _, three_fitted, three, three_test = run_on_dask(customers, params, dask_client, tmp_path / "three", parts=3)
    _, five_fitted, five, five_test = run_on_dask(customers, params, dask_client, tmp_path / "five", parts=5)
    assert sorted((tmp_path / "five" / "train.parquet").iterdir())[-1].name == "part-00004.parquet"
    pd.testing.assert_frame_equal(three, five)
    pd.testing.assert_frame_equal(three_test, five_test)
    assert three_fitted.medians_ == five_fitted.medians_ and three_fitted.levels_ == five_fitted.levels_


def test_another_seed_splits_otherwise(customers, params, dask_client, tmp_path):
    other = params.model_copy(update={"base": params.base.model_copy(update={"seed": params.base.seed + 1})})
    _, _, _, test = run_on_dask(customers, params, dask_client, tmp_path / "one")
    _, _, _, other_test = run_on_dask(customers, other, dask_client, tmp_path / "other")
    assert set(test[ID]) != set(other_test[ID])


def test_repeated_ids_keep_their_first_row_across_partitions(customers, params, dask_client, tmp_path, capsys):
    # 30 customers appear again at the end of the table (in another partition), with other values.
    repeats = customers.head(30).assign(age=999.0)
    table = pd.concat([customers, repeats], ignore_index=True)
    _, _, train, test = run_on_dask(table, params, dask_client, tmp_path)
    written = pd.concat([train, test])
    assert len(written) == len(customers) and written[ID].is_unique
    assert 999.0 not in written["age"].to_numpy()
    assert "dropped 30 rows" in capsys.readouterr().err


def test_the_medians_are_exact_for_any_values():
    rng = np.random.default_rng(3)
    columns = {
        "negative_and_positive": rng.normal(size=1001).astype(np.float32) * 1e3,
        "few_levels": rng.integers(-2, 3, size=1001).astype(np.float32),
        "signed_zeros": np.where(rng.random(1001) < 0.5, np.float32(-0.0), np.float32(0.0)),
        "gaps": np.where(rng.random(1001) < 0.3, np.nan, rng.exponential(size=1001)).astype(np.float32),
        "nothing": np.full(1001, np.nan, dtype=np.float32),
    }
    frame = pd.DataFrame(columns).assign(**{IN_TEST: rng.random(1001) < 0.2, LABEL: 0})
    preprocessor = CustomerPreprocessor(list(columns), [])
    parts = [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), 4)]
    pieces = [preprocessing._training_statistics(part, preprocessor, "t") for part in parts]
    high = preprocessing._tree_added(pieces, fan_in=2).compute()
    needed = {c: sorted({b for b, _ in preprocessing._middle_ranks(h)}) if h.sum() else [] for c, h in
              high["histograms"].items()}
    low = [preprocessing._training_statistics(part, preprocessor, "t", needed) for part in parts]
    medians = preprocessing._medians(high["histograms"], preprocessing._tree_added(low).compute()["histograms"])
    expected = CustomerPreprocessor(list(columns), []).fit(frame[~frame[IN_TEST]]).medians_
    assert np.isnan(medians.pop("nothing")) and np.isnan(expected.pop("nothing"))
    assert medians == expected


@pytest.mark.parametrize("break_table", [
    lambda frame: frame.assign(purchased=frame["purchased"].where(frame.index < len(frame) - 5)),  # last file
    lambda frame: frame.assign(purchased=0),
    lambda frame: frame.assign(age=np.nan),
    lambda frame: frame.assign(age=frame["age"].astype(str).where(frame.index > 10, "unknown")),
    lambda frame: frame.drop(columns="region"),
])
def test_a_bad_partitioned_table_gives_the_local_engines_error(customers, params, dask_client, tmp_path,
                                                                break_table):
    table = break_table(customers)
    with pytest.raises(DataError) as local:
        check_training_table(table, params.data, "customers")
    with pytest.raises(DataError) as on_dask:
        run_on_dask(table, params, dask_client, tmp_path)
    assert str(on_dask.value).replace(str(tmp_path / "input"), "customers") == str(local.value)
    assert not (tmp_path / "train.parquet").exists()


def test_a_column_empty_in_one_partition_only_is_fine(customers, params, dask_client, tmp_path):
    table = customers.assign(age=customers["age"].where(customers.index >= len(customers) // 3))
    _, fitted, _, _ = run_on_dask(table, params, dask_client, tmp_path)
    assert "age" in fitted.indicator_columns_


# --- tune and calibrate: a stratified sample of a partitioned split, chosen on the cluster ----------------------

def test_a_sample_of_a_partitioned_split_is_stratified_and_chosen_by_the_seed(train_table, dask_client, tmp_path):
    from stages.lib.models import sample_on_dask

    folder = parts_of(train_table, tmp_path / "train.parquet", parts=4)
    sample = sample_on_dask(folder, 1000, seed=7)
    buyers = train_table[LABEL].sum()
    assert len(sample) == 1000
    assert sample[LABEL].sum() == round(1000 * buyers / len(train_table))
    # Rows of the table, unchanged, in table order.
    positions = pd.Index(train_table[ID]).get_indexer(sample[ID])
    assert (positions >= 0).all() and (np.diff(positions) > 0).all()
    pd.testing.assert_frame_equal(sample, train_table.iloc[positions].reset_index(drop=True))
    pd.testing.assert_frame_equal(sample_on_dask(folder, 1000, seed=7), sample)
    assert set(sample_on_dask(folder, 1000, seed=8)[ID]) != set(sample[ID])
    # Cut into other files, the same rows are chosen (the hash is of the row's number in the whole table).
    other = parts_of(train_table, tmp_path / "other", parts=7)
    pd.testing.assert_frame_equal(sample_on_dask(other, 1000, seed=7), sample)
    pd.testing.assert_frame_equal(sample_on_dask(folder, len(train_table) + 5, seed=7),
                                  train_table.reset_index(drop=True))


def test_tune_and_calibrate_read_a_partitioned_split_through_the_sample(train_table, params_with, dask_client,
                                                                       tmp_path, monkeypatch):
    from stages.lib import models

    folder = parts_of(train_table, tmp_path / "train.parquet", parts=3)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_client.scheduler.address)
    monkeypatch.setattr(models, "read_table", lambda *args: pytest.fail("read the whole split"))
    features, y = models.training_rows(folder, params_with(compute__engine="dask"), 800)
    assert len(y) == len(features) == 800 and LABEL not in features and ID not in features


def test_resampling_a_partitioned_split_file_by_file_equals_the_whole(train_table, params_with, dask_client,
                                                                      tmp_path):
    from stages.lib.resampling import resample_partitions, resample_training

    folder = parts_of(train_table, tmp_path / "train.parquet", parts=3)
    for method in ("none", "class_weight"):
        resample = params_with(resample__method=method).resample
        output = tmp_path / f"{method}.parquet"
        report = resample_partitions(folder, output, resample, 42, [ID])
        whole, whole_report = resample_training(train_table, resample, 42, [ID])
        assert sorted(p.name for p in output.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
        pd.testing.assert_frame_equal(read_table(output), whole)
        assert report == whole_report


# --- evaluate: the test split scored file by file on the cluster ---------------------------------------------

def test_scoring_a_partitioned_test_split_on_dask_equals_scoring_it_whole(train_table, test_table, params_with,
                                                                        dask_client, tmp_path, monkeypatch):
    from stages.lib.baselines import fit_baselines
    from stages.lib.calibration import ProbabilityCalibrator
    from stages.lib.held_out import score_held_out
    from stages.lib.models import train_model
    from stages.lib.schema import split_features

    params = params_with(compute__engine="dask")
    features, y = split_features(train_table, [ID])
    model = train_model(features, y, params_with(), {"num_leaves": 8})
    calibrator = ProbabilityCalibrator("isotonic").fit(model.predict_proba(features)[:, 1], y)
    baselines = fit_baselines(features, y, 42, 1)
    whole = tmp_path / "test.parquet"
    test_table.to_parquet(whole, index=False)
    local = score_held_out(whole, model, calibrator, baselines, params_with())
    folder = parts_of(test_table, tmp_path / "test", parts=3)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_client.scheduler.address)
    on_dask = score_held_out(folder, model, calibrator, baselines, params)
    assert on_dask.table is None and local.table is not None
    for name in ("y", "probability", "raw"):
        np.testing.assert_array_equal(getattr(on_dask, name), getattr(local, name))
    assert on_dask.baselines.keys() == local.baselines.keys()
    for name in local.baselines:
        np.testing.assert_array_equal(on_dask.baselines[name], local.baselines[name])
