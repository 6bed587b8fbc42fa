"""preprocess: stratified split, disjoint customers, a preprocessor that learns from training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError
from stages.lib.core.files import load_object, save_object
from stages.lib.core.tables import read_table
from stages.lib.data.preprocessor import INDICATOR_SUFFIX, MISSING_LEVEL, OTHER_LEVEL, CustomerPreprocessor
from stages.lib.data.schema import LABEL
from stages.lib.data.split import preprocess_customers
from tests.helpers import edited_params, python_module, write_params

ID = "customer_id"


def raw_rows(customers: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The raw customer rows behind a processed table, in the table's order."""
    return customers.set_index(ID).loc[table[ID].to_numpy()].reset_index()


def test_split_sizes_and_stratification(params, customers, train_table, test_table):
    assert len(train_table) + len(test_table) == len(customers)
    assert len(test_table) == pytest.approx(params.preprocess.test_size * len(customers), abs=1)
    buyers = int(customers["purchased"].sum())
    # Stratified: each side holds its share of buyers to within one customer.
    assert abs(int(test_table[LABEL].sum()) - buyers * params.preprocess.test_size) <= 1
    assert int(train_table[LABEL].sum()) + int(test_table[LABEL].sum()) == buyers
    rate = customers["purchased"].mean()
    assert train_table[LABEL].mean() == pytest.approx(rate, abs=0.002)
    assert test_table[LABEL].mean() == pytest.approx(rate, abs=0.002)


def test_no_customer_on_both_sides(customers, train_table, test_table):
    train_ids, test_ids = set(train_table[ID]), set(test_table[ID])
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(customers[ID])


def test_labels_follow_the_customers(customers, train_table, test_table):
    for table in (train_table, test_table):
        assert table[LABEL].tolist() == raw_rows(customers, table)["purchased"].tolist()
        assert table[LABEL].dtype == np.int8


def test_split_is_deterministic_and_follows_the_seed(engine, params, customers, train_table):
    again, _, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    pd.testing.assert_frame_equal(again, train_table)
    other, _, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed + 1)
    assert set(other[ID]) != set(train_table[ID])


def test_output_columns(params, train_table, test_table, preprocessor):
    expected = [ID, *preprocessor.feature_names_out_, LABEL]
    assert list(train_table.columns) == expected
    assert list(test_table.columns) == expected
    assert "purchased" not in train_table.columns
    for column in preprocessor.numeric_columns:
        assert train_table[column].dtype == np.float32
        assert train_table[column].notna().all()
    for column in preprocessor.categorical_columns:
        assert isinstance(train_table[column].dtype, pd.CategoricalDtype)
        assert list(train_table[column].cat.categories) == preprocessor.levels_[column]


def test_preprocessor_statistics_come_from_training_rows(params, customers, train_table, test_table,
                                                         preprocessor):
    train_raw = raw_rows(customers, train_table)
    test_raw = raw_rows(customers, test_table)
    for column in preprocessor.numeric_columns:
        expected = float(train_raw[column].astype("float32").median())
        assert preprocessor.medians_[column] == pytest.approx(expected, rel=1e-6), column
    assert set(preprocessor.indicator_columns_) == {
        c for c in preprocessor.numeric_columns if train_raw[c].isna().any()
    }
    minimum = params.preprocess.rare_category_min_count
    for column in preprocessor.categorical_columns:
        counts = train_raw[column].value_counts()
        assert preprocessor.levels_[column] == [MISSING_LEVEL, OTHER_LEVEL, *sorted(counts.index[counts >= minimum])]
    # The test rows would have given other statistics: the check above can tell them apart.
    assert any(float(test_raw[c].median()) != preprocessor.medians_[c] for c in preprocessor.numeric_columns)


def _preprocessor_of(engine, frame, params):
    return preprocess_customers(engine, frame, params.data, params.preprocess, params.base.seed)[2]


def test_changing_test_rows_leaves_the_preprocessor_unchanged(engine, params, customers, test_table, preprocessor):
    test_ids = test_table[ID]
    edited = customers.copy()
    in_test = edited[ID].isin(test_ids)
    # Extreme values and a new, frequent level on test rows only; the split depends on labels alone.
    edited.loc[in_test, "age"] = 1000.0
    edited.loc[in_test, "minutes_on_site"] = np.nan
    edited.loc[in_test, "region"] = "Atlantis"
    refit = _preprocessor_of(engine, edited, params)
    assert refit.medians_ == preprocessor.medians_
    assert refit.levels_ == preprocessor.levels_
    assert refit.indicator_columns_ == preprocessor.indicator_columns_


def test_changing_training_rows_changes_the_preprocessor(engine, params, customers, test_table, preprocessor):
    edited = customers.copy()
    in_train = ~edited[ID].isin(test_table[ID])
    edited.loc[in_train, "age"] = 1000.0
    edited.loc[in_train & (edited.index % 2 == 0), "region"] = "Atlantis"
    refit = _preprocessor_of(engine, edited, params)
    assert refit.medians_["age"] == 1000.0 != preprocessor.medians_["age"]
    assert "Atlantis" in refit.levels_["region"]


def test_unseen_and_missing_values_at_transform_time(preprocessor, customers):
    rows = customers.head(4).copy()
    rows["region"] = ["Atlantis", None, "London", "  London "]
    rows["device"] = [np.nan, "hologram", "mobile", "mobile"]
    numeric_with_gaps = preprocessor.indicator_columns_[0]
    rows[numeric_with_gaps] = [np.nan, 1.0, 2.0, np.nan]
    out = preprocessor.transform(rows)
    assert out["region"].tolist() == [OTHER_LEVEL, MISSING_LEVEL, "London", "London"]
    assert out["device"].tolist() == [MISSING_LEVEL, OTHER_LEVEL, "mobile", "mobile"]
    assert list(out["region"].cat.categories) == preprocessor.levels_["region"]
    median = np.float32(preprocessor.medians_[numeric_with_gaps])
    assert out[numeric_with_gaps].tolist() == [median, 1.0, 2.0, median]
    assert out[numeric_with_gaps + INDICATOR_SUFFIX].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert list(out.columns) == preprocessor.feature_names_out_


def test_rare_training_levels_become_other(params, customers, train_table, preprocessor):
    train_raw = raw_rows(customers, train_table)
    counts = train_raw["region"].value_counts()
    rare = counts[counts < params.preprocess.rare_category_min_count].index.tolist()
    assert rare, "the generated data should hold a rare region"
    is_rare = train_raw["region"].isin(rare).to_numpy()
    assert (train_table.loc[is_rare, "region"] == OTHER_LEVEL).all()
    assert not set(rare) & set(preprocessor.levels_["region"])


def test_missing_categoricals_become_missing_level(customers, train_table):
    train_raw = raw_rows(customers, train_table)
    gaps = train_raw["gender"].isna().to_numpy()
    assert gaps.any()
    assert (train_table.loc[gaps, "gender"] == MISSING_LEVEL).all()
    assert not (train_table.loc[~gaps, "gender"] == MISSING_LEVEL).any()


def test_preprocessor_codes_are_stable_for_one_row_at_a_time(preprocessor, customers):
    """Scoring one customer must give the codes that scoring many gives."""
    many = preprocessor.transform(customers.head(50))
    for i in (0, 17, 49):
        one = preprocessor.transform(customers.iloc[[i]])
        for column in preprocessor.categorical_columns:
            assert one[column].cat.codes.iloc[0] == many[column].cat.codes.iloc[i]


def test_duplicate_ids_keep_the_first_row_and_never_straddle_the_split(engine, params, customers):
    doubled = pd.concat([customers, customers.head(300).assign(age=-1.0)], ignore_index=True)
    train, test, _ = preprocess_customers(engine, doubled, params.data, params.preprocess, params.base.seed)
    assert len(train) + len(test) == len(customers)
    assert train[ID].is_unique and test[ID].is_unique
    assert not set(train[ID]) & set(test[ID])
    assert not (train["age"] == -1.0).any() and not (test["age"] == -1.0).any()


def test_preprocessor_round_trips_through_joblib(tmp_path, preprocessor, customers):
    save_object(preprocessor, tmp_path / "p.joblib")
    loaded = load_object(tmp_path / "p.joblib")
    assert isinstance(loaded, CustomerPreprocessor)
    pd.testing.assert_frame_equal(loaded.transform(customers.head(100)), preprocessor.transform(customers.head(100)))
    # Scoring names customers by the training run's ID columns, which travel with the model.
    assert loaded.id_columns == [ID] and ID not in loaded.input_columns


def test_a_directory_of_parquet_files_is_read_as_one_table(tmp_path, customers):
    folder = tmp_path / "customers"
    folder.mkdir()
    for number, rows in enumerate(np.array_split(np.arange(len(customers)), 3)):
        customers.iloc[rows].to_parquet(folder / f"part-{number}.parquet", index=False)
    (folder / "_SUCCESS").write_text("")  # a marker Spark and others leave: not a table file
    single = tmp_path / "customers.parquet"
    customers.to_parquet(single, index=False)
    pd.testing.assert_frame_equal(read_table(folder), read_table(single))

    params = write_params(edited_params({"data.path": str(folder)}), tmp_path / "params.yaml")
    outputs = {}
    for name, source in (("folder", folder), ("single", single)):
        out = tmp_path / name
        python_module("stages.preprocess", "--params", params, "--input", source, "--train", out / "train.parquet",
                      "--test", out / "test.parquet", "--preprocessor", out / "pp.joblib")
        outputs[name] = [(out / f).read_bytes() for f in ("train.parquet", "test.parquet")]
    assert outputs["folder"] == outputs["single"]


@pytest.mark.parametrize("name, make, phrase", [
    ("missing", lambda path: None, "not found"),
    ("empty", lambda path: path.mkdir(), "no .parquet files found"),
])
def test_a_missing_or_empty_directory_is_one_clear_error(tmp_path, name, make, phrase):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=phrase):
        read_table(path)
