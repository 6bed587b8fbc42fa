"""resample: originals first and unchanged, synthetic rows flagged and ID-less, counts reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError
from stages.lib.data.schema import LABEL, SYNTHETIC
from stages.lib.modeling.resampling import counts_report, oversample, resample_training

ID = "customer_id"


def test_synthetic_rows_are_flagged_appended_buyers(params, train_table, resampled_table, resample_report):
    n = len(train_table)
    flags = resampled_table[SYNTHETIC].to_numpy()
    assert flags.dtype == bool
    assert not flags[:n].any()
    assert flags[n:].all()
    assert len(resampled_table) > n
    assert (resampled_table.loc[flags, LABEL] == 1).all()
    assert resample_report["synthetic_rows"] == int(flags.sum())


def test_synthetic_rows_have_no_id(train_table, resampled_table):
    flags = resampled_table[SYNTHETIC].to_numpy()
    assert resampled_table.loc[flags, ID].isna().all()
    assert resampled_table.loc[~flags, ID].notna().all()


def test_synthetic_rows_are_new_points_with_valid_values(train_table, resampled_table):
    synthetic = resampled_table[resampled_table[SYNTHETIC]]
    features = [c for c in train_table.columns if c not in (ID, LABEL)]
    originals = set(map(tuple, train_table[features].astype(str).to_numpy()))
    new = [tuple(row) for row in synthetic[features].astype(str).to_numpy()]
    assert sum(row not in originals for row in new) > 0.9 * len(new)
    for column in features:
        if isinstance(train_table[column].dtype, pd.CategoricalDtype):
            assert list(synthetic[column].cat.categories) == list(train_table[column].cat.categories)
            assert synthetic[column].notna().all()
        else:
            assert synthetic[column].dtype == train_table[column].dtype
            # SMOTE interpolates between buyers: it never leaves their range.
            buyers = train_table.loc[train_table[LABEL] == 1, column]
            assert synthetic[column].between(buyers.min(), buyers.max()).all(), column


def test_report_counts_match_the_tables(params, train_table, resampled_table, resample_report):
    assert resample_report["method"] == params.resample.method
    assert resample_report["before"] == counts_report(train_table[LABEL].to_numpy())
    assert resample_report["after"] == counts_report(resampled_table[LABEL].to_numpy())
    before, after = resample_report["before"], resample_report["after"]
    assert before["rows"] == len(train_table) and after["rows"] == len(resampled_table)
    assert after["non_buyers"] == before["non_buyers"]
    # imbalanced-learn's float strategy: buyers = strategy x non-buyers (rounded down).
    assert after["buyers"] == int(params.resample.sampling_strategy * before["non_buyers"])
    assert after["rows"] - before["rows"] == resample_report["synthetic_rows"]


def test_counts_report_hand_checked():
    assert counts_report(np.array([1, 0, 0, 1, 0], dtype=np.int8)) == {"buyers": 2, "non_buyers": 3, "rows": 5}


@pytest.mark.parametrize("method", ["none", "class_weight"])
def test_none_and_class_weight_copy_the_split_unchanged(params_with, method, train_table):
    params = params_with(resample__method=method)
    table, report = resample_training(train_table, params.resample, params.base.seed, params.data.id_columns)
    assert not table[SYNTHETIC].any()
    features = [c for c in train_table.columns if c != ID]
    pd.testing.assert_frame_equal(table[features], train_table[features])
    assert table[ID].astype("int64").tolist() == train_table[ID].tolist()
    assert report["before"] == report["after"] and report["synthetic_rows"] == 0
    assert report["method"] == method


@pytest.mark.parametrize("method", ["smote", "smotenc", "borderline_smote", "adasyn"])
def test_each_smote_variant_runs(params_with, method, train_table):
    params = params_with(resample__method=method)
    table, report = resample_training(train_table, params.resample, params.base.seed, params.data.id_columns)
    n = len(train_table)
    assert report["method"] == method
    assert report["synthetic_rows"] > 0
    assert report["after"]["buyers"] > report["before"]["buyers"]
    assert report["after"]["non_buyers"] == report["before"]["non_buyers"]
    assert table[SYNTHETIC].sum() == report["synthetic_rows"] == len(table) - n
    assert (table.loc[table[SYNTHETIC], LABEL] == 1).all()
    assert table.loc[table[SYNTHETIC], ID].isna().all()
    features = [c for c in train_table.columns if c != ID]
    pd.testing.assert_frame_equal(table.iloc[:n][features], train_table[features])


def test_resampling_is_deterministic_for_a_seed(params, train_table, resampled_table):
    again, _ = resample_training(train_table, params.resample, params.base.seed, params.data.id_columns)
    pd.testing.assert_frame_equal(again, resampled_table)
    other, _ = resample_training(train_table, params.resample, params.base.seed + 1, params.data.id_columns)
    assert not other.equals(resampled_table)


def test_sampling_strategy_sets_the_buyer_share(params_with, train_table):
    params = params_with(resample__sampling_strategy=0.25)
    _, report = resample_training(train_table, params.resample, params.base.seed, params.data.id_columns)
    assert report["after"]["buyers"] == int(0.25 * report["before"]["non_buyers"])


def test_too_few_buyers_for_k_neighbors_is_a_data_error(params_with, train_table):
    params = params_with(resample__k_neighbors=5)
    few = pd.concat([train_table[train_table[LABEL] == 0], train_table[train_table[LABEL] == 1].head(3)])
    with pytest.raises(DataError, match="k_neighbors=5 needs at least 6"):
        resample_training(few, params.resample, params.base.seed, params.data.id_columns)


def test_oversample_keeps_categorical_codes_in_range():
    rng = np.random.default_rng(0)
    n = 200
    features = pd.DataFrame({
        "x": rng.normal(size=n).astype(np.float32),
        "c": pd.Categorical.from_codes(rng.integers(0, 3, n), categories=["__missing__", "__other__", "a"]),
    })
    y = (np.arange(n) < 20).astype(np.int8)
    for method in ("smote", "smotenc"):
        out, y_out = oversample(features, y, method, 5, 1.0, seed=0)
        assert int(y_out.sum()) == n - 20
        assert list(out["c"].cat.categories) == ["__missing__", "__other__", "a"]
        assert out["c"].cat.codes.between(0, 2).all()
        pd.testing.assert_frame_equal(out.iloc[:n], features)


@pytest.mark.parametrize("method", ["smote", "borderline_smote", "adasyn"])
def test_kd_tree_neighbours_resample_exactly_as_brute_force(train_xy, monkeypatch, method):
    from sklearn.neighbors import NearestNeighbors

    import stages.lib.modeling.resampling as resampling

    features, y = train_xy
    fast = resampling.oversample(features, y, method, 5, 0.5, 7)
    monkeypatch.setattr(resampling, "_neighbours", lambda k, m: NearestNeighbors(n_neighbors=k + 1, algorithm="brute"))
    brute = resampling.oversample(features, y, method, 5, 0.5, 7)
    pd.testing.assert_frame_equal(fast[0], brute[0])
    np.testing.assert_array_equal(fast[1], brute[1])
