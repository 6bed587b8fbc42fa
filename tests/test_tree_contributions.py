"""Contributions from per-tree tables are LightGBM's pred_contrib: within 1e-12, the same reasons, the same bits
whatever the batch, the threads or the path a tree took (stages.lib.evaluation.tree_contributions), with every
decision LightGBM takes (stages.lib.evaluation.tree_decisions): gaps each way, zeros as missing, categories
unseen, negative, fractional or past every bitset, values on every threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from lightgbm.basic import LightGBMError

import stages.lib.evaluation.tree_contributions as tables
import stages.lib.evaluation.tree_decisions as decisions
from stages.lib.data.schema import LABEL
from stages.lib.data.synthetic import generate_customers
from stages.lib.evaluation.explanations import contributions, reason_codes
from stages.lib.evaluation.tree_contributions import tree_contributions
from stages.lib.evaluation.tree_decisions import parse_trees
from stages.lib.modeling.estimators import LIGHTGBM, train_model
from tests.helpers import recipe_of

TOLERANCE = 1e-12
REASONS = 3


def assert_pred_contrib(booster, features, frame: pd.DataFrame | None = None, threads: int = 1) -> np.ndarray:
    """The tables' contributions of `features` are pred_contrib's within TOLERANCE (the bias to the bit) and
    give the same top reasons; returns them."""
    expected = booster.predict(features, pred_contrib=True)
    got = tree_contributions(booster, features, threads)
    assert got.shape == expected.shape and got.flags.c_contiguous
    assert np.abs(got - expected).max() <= TOLERANCE
    np.testing.assert_array_equal(got[:, -1], expected[:, -1])
    frame = features if frame is None else frame
    # Gaps in a category as a level of their own (the project's preprocessor leaves none; reason_codes expects none).
    frame = frame.assign(**{c: frame[c].cat.add_categories(["(gap)"]).fillna("(gap)")
                            for c in frame.select_dtypes("category")})
    ours, theirs = reason_codes(got[:, :-1], frame, REASONS), reason_codes(expected[:, :-1], frame, REASONS)
    for k in range(1, REASONS + 1):
        assert ours[f"reason_{k}"].tolist() == theirs[f"reason_{k}"].tolist()
    return got


@pytest.fixture(autouse=True)
def no_kept_tables():
    """Every test starts from no kept table entries (the module's constants decide which tables are kept)."""
    tables._MODELS.clear()
    yield
    tables._MODELS.clear()


class RowsComputed:
    """Counts the rows LightGBM's pred_contrib computes a tree on."""

    def __init__(self, monkeypatch):
        self.rows = 0
        single_tree = tables._single_tree

        def counted(booster, rows, t, threads):
            self.rows += len(rows)
            return single_tree(booster, rows, t, threads)
        monkeypatch.setattr(tables, "_single_tree", counted)


@pytest.fixture(scope="module")
def customers(params):
    """Generated customers as LightGBM sees them before preprocessing: gaps (NaN) in four numbers, zeros in
    the counts, and the five categorical columns as categories."""
    frame, _ = generate_customers(params.generate, params.base.seed)
    y = frame.pop(params.data.target).to_numpy()
    frame = frame.drop(columns=params.data.id_columns)
    for column in params.data.categorical_columns:
        frame[column] = frame[column].astype("category")
    assert frame.isna().any().sum() >= 4 and (frame.select_dtypes("number") == 0).any().sum() >= 4
    return frame, y


def fit(customers, **settings) -> LGBMClassifier:
    frame, y = customers
    # Small categorical penalties: many categorical splits, most of them sending several levels left.
    return LGBMClassifier(verbose=-1, n_jobs=1, min_child_samples=5, min_data_per_group=2, cat_smooth=0.1,
                          cat_l2=0.1, max_cat_to_onehot=2, **settings).fit(frame, y)


@pytest.fixture(scope="module")
def models(customers):
    """Models whose numerical splits send missing values each way LightGBM can: NaN as missing (the default,
    64 leaves: the most the tests' search space allows), 0 and NaN as missing (zero_as_missing), and no
    missing values at all (use_missing=False: NaN is 0)."""
    return {"nan": fit(customers, n_estimators=10, num_leaves=64),
            "zero": fit(customers, n_estimators=20, num_leaves=16, zero_as_missing=True),
            "none": fit(customers, n_estimators=20, num_leaves=16, use_missing=False)}


def scoring_rows(customers, rows: int = 800, copies: int = 3) -> pd.DataFrame:
    """Rows to explain: customers, each `copies` times (so even 64-leaf trees have fewer keys than half the
    rows, and get tables), with gaps in the categories, a level the model never saw, and the levels in
    another order than in training."""
    frame = customers[0].iloc[:rows].copy()
    region = frame["region"].cat.add_categories(["Atlantis"])
    region.iloc[::7] = "Atlantis"
    frame["region"] = region.cat.reorder_categories(list(reversed(region.cat.categories)))
    frame.loc[frame.index[::5], "device"] = np.nan
    frame.loc[frame.index[::11], "income_band"] = np.nan
    return pd.concat([frame] * copies, ignore_index=True)


def test_the_project_model_and_its_reasons_are_pred_contribs(params, _resampled, test_table, monkeypatch):
    from stages.lib.engines.local.engine import LocalEngine

    model = train_model(LocalEngine(1), _resampled[0].copy(), recipe_of(params), params.data.id_columns,
                        {"num_leaves": 8}, LIGHTGBM)[0]
    features = test_table.drop(columns=["customer_id", LABEL])
    assert any(tree.left_categories for tree in parse_trees(model.booster_.model_to_string())[1])
    computed = RowsComputed(monkeypatch)
    values, bias = contributions(model, features, threads=2)
    expected = model.booster_.predict(features, pred_contrib=True)
    assert np.abs(values - expected[:, :-1]).max() <= TOLERANCE
    np.testing.assert_array_equal(bias, expected[:, -1])
    # The contributions may differ in the last place; the reason text may not.
    ours, theirs = reason_codes(values, features, REASONS), reason_codes(expected[:, :-1], features, REASONS)
    for k in range(1, REASONS + 1):
        assert ours[f"reason_{k}"].tolist() == theirs[f"reason_{k}"].tolist()
    # A table per tree: LightGBM computed each tree on one row per key, a small share of the rows.
    trees = model.booster_.num_trees()
    assert computed.rows < 0.1 * trees * len(features)


# The tables' paths, each for every tree: the defaults; a table for every tree however many keys it has;
# sorted keys for every tree (no key indexes a table); slots for trees of up to 16 internal nodes; keys
# of several words (63 internal nodes in words of 20).
PATHS = {
    "defaults": {},
    "always a table": {"MAX_TABLE_SHARE": 1.0},
    "sorted keys": {"MAX_TABLE_SHARE": 1.0, "DENSE_BITS": 0, "KEYED_BITS": 0},
    "slots": {"MAX_TABLE_SHARE": 1.0, "DENSE_BITS": 0},
    "key words": {"MAX_TABLE_SHARE": 1.0, "WORD_BITS": 20},
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_many_leaves_gaps_and_categories_every_path(customers, models, path, missing, monkeypatch):
    for name, value in PATHS[path].items():
        monkeypatch.setattr(decisions if name == "WORD_BITS" else tables, name, value)
    booster = models[missing].booster_
    trees = parse_trees(booster.model_to_string())[1]
    assert sum(len(tree.left_categories) for tree in trees) >= 40
    assert max(tree.internal for tree in trees) == (63 if missing == "nan" else 15)
    computed = RowsComputed(monkeypatch)
    rows = scoring_rows(customers)
    assert_pred_contrib(booster, rows)
    # Even the 64-leaf trees got tables: LightGBM computed them on fewer rows than the batch has.
    assert computed.rows < 0.5 * len(trees) * len(rows)


def edge_values(booster, frame: pd.DataFrame, seed: int) -> np.ndarray:
    """LightGBM's matrix of `frame` with values on every edge of the model's decisions: each threshold and the
    doubles next to it, 0, -0, values within 1e-35 of 0, infinities and NaN; for a category, fractions,
    negative values, values past every bitset or an int, infinities and NaN."""
    matrix = decisions.lightgbm_matrix(booster, frame).astype(np.float64)
    trees = parse_trees(booster.model_to_string())[1]
    cells = decisions.Cells(trees)
    rng = np.random.default_rng(seed)
    special = [0.0, -0.0, 1e-36, -1e-36, decisions.ZERO, -decisions.ZERO, 2e-35, np.inf, -np.inf, np.nan]
    for feature, thresholds in cells.thresholds.items():
        edges = np.concatenate([thresholds, np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf),
                                special])
        rows = rng.random(len(matrix)) < 0.5
        matrix[rows, feature] = rng.choice(edges, rows.sum())
    for feature, size in cells.categories.items():
        edges = np.array([-1.0, -0.5, -0.0, 0.5, 1.99, 2.5, size - 1, size, size + 3.7, 1e10, 2.0**31, 2.0**31 - 1,
                          np.inf, -np.inf, np.nan])
        rows = rng.random(len(matrix)) < 0.5
        matrix[rows, feature] = rng.choice(edges, rows.sum())
    return matrix


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_values_on_every_edge_of_the_decisions(customers, models, missing, monkeypatch):
    monkeypatch.setattr(tables, "MAX_TABLE_SHARE", 1.0)  # every tree by its table
    booster = models[missing].booster_
    matrix = edge_values(booster, customers[0].iloc[:1500], seed=7)
    assert_pred_contrib(booster, matrix, pd.DataFrame(matrix, columns=customers[0].columns))


def test_a_rows_contributions_are_the_same_bits_whatever_the_batch_threads_or_path(customers, models,
                                                                                    monkeypatch):
    booster = models["zero"].booster_
    frame = scoring_rows(customers, rows=600, copies=2)
    full = tree_contributions(booster, frame, threads=1)
    assert np.array_equal(tree_contributions(booster, frame, threads=2), full)
    some = np.arange(3, len(frame), 17)
    assert np.array_equal(tree_contributions(booster, frame.iloc[some], threads=1), full[some])  # entries kept
    tables._MODELS.clear()
    assert np.array_equal(tree_contributions(booster, frame.iloc[some], threads=1), full[some])  # none kept
    monkeypatch.setattr(tables, "CHUNK_ROWS", 64)
    monkeypatch.setattr(tables, "BLOCK_ROWS", 200)
    assert np.array_equal(tree_contributions(booster, frame, threads=2), full)
    tables._MODELS.clear()
    monkeypatch.setattr(tables, "MAX_TABLE_SHARE", 0.0)  # LightGBM on every row for every tree
    computed = RowsComputed(monkeypatch)
    assert np.array_equal(tree_contributions(booster, frame, threads=1), full)
    assert computed.rows == booster.num_trees() * len(frame)


@pytest.mark.parametrize("leaves", [2, 3])
def test_trees_on_one_feature_share_its_table_and_kept_entries_need_no_lightgbm(customers, leaves, monkeypatch):
    """Stumps (every tree on one feature) and 3-leaf trees (some on one feature, some on two): exact, and a
    second call on rows whose keys were all seen computes nothing with LightGBM."""
    booster = fit(customers, n_estimators=60, num_leaves=leaves).booster_
    alone = [len(tree.used) == 1 for tree in parse_trees(booster.model_to_string())[1]]
    assert all(alone) if leaves == 2 else 0 < sum(alone) < len(alone)
    rows = scoring_rows(customers)
    computed = RowsComputed(monkeypatch)
    first = assert_pred_contrib(booster, rows, threads=2)
    assert 0 < computed.rows < 0.1 * len(alone) * len(rows)
    computed.rows = 0
    assert np.array_equal(tree_contributions(booster, rows.iloc[::-1], threads=1), first[::-1])
    assert computed.rows == 0


def test_models_the_tables_do_not_cover_go_to_pred_contrib(customers):
    frame, y = customers
    numbers = frame.select_dtypes("number").iloc[:1000]
    classes = (y[:1000] + (numbers["age"].fillna(0).to_numpy() > 40)).astype(int)
    multiclass = LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1, n_jobs=1).fit(numbers, classes).booster_
    assert np.array_equal(tree_contributions(multiclass, numbers), multiclass.predict(numbers, pred_contrib=True))
    # Linear trees: LightGBM has no contributions for them, and says so.
    linear = LGBMClassifier(n_estimators=2, num_leaves=4, linear_tree=True, verbose=-1, n_jobs=1).fit(
        numbers.fillna(0), y[:1000]).booster_
    with pytest.raises(LightGBMError, match="linear trees"):
        tree_contributions(linear, numbers)
