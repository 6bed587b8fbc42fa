"""The one algorithm for the split and every sample: seeded keys, stratified quotas, the quota-th smallest key.

These run the library's partition functions on the local engine (in this process);
test_engines.py runs the same functions on a Dask cluster and compares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.data import sampling
from stages.lib.data.schema import LABEL
from stages.lib.data.split import preprocess_customers
from stages.lib.engines.local.engine import LocalEngine

ID = "customer_id"


def smallest_by_sorting(keys: np.ndarray, labels: np.ndarray, quotas: dict[int, int]) -> np.ndarray:
    """The rows the algorithm keeps, by the obvious method: sort each class's keys, take the quota."""
    keep = np.zeros(len(keys), dtype=bool)
    for label, quota in quotas.items():
        rows = np.flatnonzero(labels == label)
        keep[rows[np.argsort(keys[rows], kind="stable")[:quota]]] = True
    return keep


def kept_in_pieces(keys: np.ndarray, labels: np.ndarray, quotas: dict[int, int], pieces: int) -> np.ndarray:
    """The algorithm as an engine runs it: partition functions on `pieces` parts, results combined."""
    parts = np.array_split(np.arange(len(keys)), pieces)
    bins = sampling.added_bins([sampling.key_bins(keys[p], labels[p]) for p in parts])
    where = sampling.bins_of_quotas(bins, quotas)
    in_bins = sampling.joined_keys([sampling.keys_in_bins(keys[p], labels[p], where) for p in parts])
    return sampling.kept(keys, labels, sampling.cutoffs_of(where, in_bins))


@pytest.mark.parametrize("rows, pieces", [(10, 1), (5000, 1), (5000, 7), (200_000, 3)])
def test_the_quota_th_smallest_key_is_found_without_sorting_all_keys(rows, pieces):
    rng = np.random.default_rng(rows)
    keys = sampling.sample_keys(0, rows, seed=11)
    labels = (rng.random(rows) < 0.05).astype(np.int8)
    counts = sampling.class_counts(labels)
    for quotas in (sampling.split_quotas(counts, 0.2), sampling.sample_quotas(counts, rows // 3),
                   {0: counts[0], 1: counts[1]}, {0: 1, 1: 0}):
        np.testing.assert_array_equal(kept_in_pieces(keys, labels, quotas, pieces),
                                      smallest_by_sorting(keys, labels, quotas))


def test_keys_crowded_in_one_bin_are_still_ranked_exactly():
    # Every key shares its top bits: the second pass sorts them all, and still finds the exact cutoff.
    keys = np.arange(1000, dtype=np.uint64)[::-1] * np.uint64(3) + np.uint64(7)
    labels = np.zeros(1000, dtype=np.int8)
    np.testing.assert_array_equal(kept_in_pieces(keys, labels, {0: 250}, 4),
                                  smallest_by_sorting(keys, labels, {0: 250}))


def test_tied_keys_at_the_cutoff_are_both_kept_on_every_engine():
    # Two customers whose IDs' 64-bit hashes collided: the algorithm keeps both rather than choose by order.
    keys = np.array([5, 9, 9, 12], dtype=np.uint64)
    labels = np.zeros(4, dtype=np.int8)
    assert kept_in_pieces(keys, labels, {0: 2}, 1).tolist() == [True, True, True, False]
    assert kept_in_pieces(keys, labels, {0: 2}, 4).tolist() == [True, True, True, False]


def test_keys_of_row_numbers_are_distinct_and_change_with_seed_and_purpose():
    keys = sampling.sample_keys(0, 100_000, seed=1)
    assert len(np.unique(keys)) == len(keys)
    assert not np.array_equal(keys, sampling.sample_keys(0, 100_000, seed=2))
    rows = sampling.row_numbers(0, 100_000)
    assert not np.array_equal(sampling.seeded_hash(rows, 1, sampling.SPLIT), keys)
    # A row's key is its own: the keys of rows 500-999 do not depend on where a partition starts.
    np.testing.assert_array_equal(sampling.sample_keys(500, 500, seed=1), keys[500:1000])


def test_the_split_is_stratified_and_every_customer_on_one_side(params, customers, train_table, test_table):
    y = customers["purchased"].to_numpy()
    for label in (0, 1):
        assert (test_table[LABEL] == label).sum() == round(params.preprocess.test_size * (y == label).sum())
    assert not set(train_table[ID]) & set(test_table[ID])
    assert sorted([*train_table[ID], *test_table[ID]]) == sorted(customers[ID])
    # Each side keeps the export's order.
    assert train_table[ID].is_monotonic_increasing == customers[ID].is_monotonic_increasing


def test_a_customer_keeps_its_side_whatever_the_row_order(engine, params, customers, test_table):
    shuffled = customers.sample(frac=1.0, random_state=3).reset_index(drop=True)
    _, test, _ = preprocess_customers(engine, shuffled, params.data, params.preprocess, params.base.seed)
    assert set(test[ID]) == set(test_table[ID])


def test_another_seed_holds_out_other_customers(engine, params_with, customers, test_table):
    params = params_with(base__seed=7)
    _, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    assert set(test[ID]) != set(test_table[ID])


def test_without_id_columns_the_row_number_decides(engine, params_with, customers):
    params = params_with(data__id_columns=[])
    train, test, _ = preprocess_customers(engine, customers.drop(columns=ID), params.data, params.preprocess, 42)
    assert len(train) + len(test) == len(customers)
    assert (test[LABEL] == 1).sum() == round(0.2 * customers["purchased"].sum())


def test_a_sample_is_stratified_in_table_order_and_chosen_by_the_seed(engine, train_table):
    engine = LocalEngine(1)
    sample = sampling.sample_table(engine, train_table, 1000, seed=7)
    assert len(sample) == 1000
    assert sample[LABEL].sum() == round(1000 * train_table[LABEL].sum() / len(train_table))
    positions = pd.Index(train_table[ID]).get_indexer(sample[ID])
    assert (positions >= 0).all() and (np.diff(positions) > 0).all()
    pd.testing.assert_frame_equal(sample, train_table.iloc[positions].reset_index(drop=True))
    assert set(sampling.sample_table(engine, train_table, 1000, seed=8)[ID]) != set(sample[ID])


@pytest.mark.parametrize("rows", [None, 10**9])
def test_a_sample_of_every_row_is_the_table(train_table, rows):
    sample = sampling.sample_table(LocalEngine(1), train_table, rows, seed=7)
    pd.testing.assert_frame_equal(sample, train_table)


def test_a_sample_is_the_same_however_the_split_is_cut_into_files(engine, train_table, tmp_path):
    whole = tmp_path / "whole.parquet"
    train_table.to_parquet(whole, index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    for number, rows in enumerate(np.array_split(np.arange(len(train_table)), 5)):
        train_table.iloc[rows].to_parquet(folder / f"part-{number:05d}.parquet", index=False)
    engine = LocalEngine(1)
    pd.testing.assert_frame_equal(sampling.sample_table(engine, folder, 777, seed=3),
                                  sampling.sample_table(engine, whole, 777, seed=3))
