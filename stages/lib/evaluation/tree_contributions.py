"""LightGBM's exact tree contributions (TreeSHAP, `pred_contrib`) from per-tree tables, for about the cost of
one raw-score predict instead of 25 or more (benchmarks/README.md, "Drift and reason codes").

A tree's TreeSHAP vector for a row (LightGBM's `Tree::TreeSHAP`) is a function of the row's decision at
every internal node of the tree (its key: bit i, left at node i, as `Tree::Decision` takes it;
stages.lib.evaluation.tree_decisions), not of its leaf alone. So per tree: LightGBM's own `pred_contrib` of
that tree alone (`start_iteration=t, num_iteration=1`) on one row per key that occurs is the tree's table,
and each row adds its key's vector in the columns of the features the tree splits on (the rest are 0).

Trees that split on one feature only (every tree of a model of stumps) go together: their keys are
functions of the row's cell of that feature (tree_decisions.Cells), so the feature's table holds per cell
the sum of their vectors in tree order, one lookup for all of them. An entry depends on its trees and key
alone, so tables indexed by a small key (a feature's cell; the key of a tree of up to DENSE_BITS internal
nodes) are kept with the model (`_MODELS`, while the booster lives) and an entry is computed the first
time a block has a row with its key; bigger trees get a table per block.

Each entry is bit for bit what LightGBM computes for any row with that key, so a row's result (per feature:
the sum over the trees that split on it alone, then the other trees' vectors in tree order) depends on that
row alone: not on the other rows, the threads, the entries kept or the path a tree took. `pred_contrib` on
the whole model adds each leaf's terms into one running sum instead: the two differ by rounding only
(tests/test_tree_contributions.py: within 1e-12); the bias column, the trees' expected values added in tree
order as LightGBM adds them, is equal to the bit.

The cut-off: where the keys a block needs computed exceed half its rows (`MAX_TABLE_SHARE`), LightGBM
computes that tree on every row of the block (the same vectors): the table would cost more than half of
that. That happens with many leaves (64-leaf trees have a key for 83-98 % of 20,000 rows) or few rows.
Keys of up to KEYED_BITS internal nodes reach a block's table through a slot per possible key, bigger
ones are sorted (`np.unique`), in 64-bit words of 63 nodes. Multiclass models and linear trees (for which
LightGBM has no contributions) go to `pred_contrib` whole.
"""

from __future__ import annotations

import functools
import operator
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from lightgbm import Booster

from stages.lib.evaluation.tree_decisions import Cells, lightgbm_matrix, parse_trees, tree_keys

MAX_TABLE_SHARE = 0.5  # of a block's rows: more keys to compute than that, and LightGBM computes every row
# Tables of keys up to DENSE_BITS internal nodes have an entry per possible key, kept with the model; up to
# KEYED_BITS a block's table is reached through a slot per possible key; bigger trees' keys are sorted.
DENSE_BITS = 12
KEYED_BITS = 16
# Rows added at a time (their running sums stay in cache); rows whose keys are found together: up to 2^17,
# fewer where the keys, kept from the first pass over a block to the second, would pass KEY_BYTES.
CHUNK_ROWS = 1 << 15
BLOCK_ROWS = 1 << 17
KEY_BYTES = 64 << 20
# pred_contrib on fewer rows runs on one thread: on a busy machine a parallel region waits for its slowest.
PARALLEL_ROWS = 4096


_Table = tuple[np.ndarray, np.ndarray, np.ndarray]  # (used, columns, index): row r adds columns[j][index[r]]


class _Kept:
    """A table with an entry per possible key, filled as keys turn up: `columns` (used features x keys)."""

    def __init__(self, trees: list[int], used: np.ndarray, size: int):
        self.trees, self.used = trees, used
        self.columns, self.known = np.zeros((len(used), size)), np.zeros(size, dtype=bool)


class _Model:
    """A booster's trees, their cells and its kept tables (one per feature some trees split on alone, one
    per other tree of up to DENSE_BITS internal nodes); `bias` each tree's expected value once known."""

    def __init__(self, text: str):
        self.text, self.lock = text, threading.Lock()
        header, self.trees = parse_trees(text)
        self.width = int(header.get("max_feature_idx", "-1")) + 1
        self.covered = int(header.get("num_tree_per_iteration", "1")) == 1 and not any(t.linear for t in self.trees)
        self.bias: list[float | None] = [None] * len(self.trees)
        numbered = list(enumerate(self.trees)) if self.covered else []
        alone: dict[int, list[int]] = {}
        for t, tree in numbered:
            if len(tree.used) == 1:
                alone.setdefault(int(tree.used[0]), []).append(t)
        self.cells = Cells(self.trees) if self.covered else None
        self.features = {f: _Kept(trees, np.array([f]), self.cells.count(f)) for f, trees in sorted(alone.items())}
        self.others = [t for t, tree in numbered if len(tree.used) != 1]
        self.kept = {t: _Kept([t], self.trees[t].used, 1 << self.trees[t].internal)
                     for t in self.others if self.trees[t].internal <= DENSE_BITS}


_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MODELS_LOCK = threading.Lock()


def _model_of(booster: Booster) -> _Model:
    text = booster.model_to_string()  # the trees predict uses (up to a best iteration)
    with _MODELS_LOCK:
        model = _MODELS.get(booster)
        if model is None or model.text != text:
            model = _MODELS[booster] = _Model(text)
        return model


def _single_tree(booster: Booster, rows: np.ndarray, t: int, threads: int) -> np.ndarray:
    """LightGBM's pred_contrib of tree `t` alone: each row's vector, the tree's expected value last."""
    return booster.predict(rows, pred_contrib=True, start_iteration=t, num_iteration=1,
                           num_threads=threads if len(rows) >= PARALLEL_ROWS else 1)


def _a_row_per_key(keys: np.ndarray, size: int) -> np.ndarray:
    """For each possible key 0..size-1, a row that has it (any will do: all get the same vector); -1: none."""
    representative = np.full(size, -1, dtype=np.intp)
    representative[keys.astype(np.intp)] = np.arange(len(keys))
    return representative


def _filled(model: _Model, booster: Booster, matrix: np.ndarray, kept: _Kept, keys: np.ndarray, threads: int,
            ) -> bool:
    """Compute the entries of `kept` the rows' `keys` need and it lacks (each the sum in tree order of its
    trees' LightGBM vectors on a row with that key); False, computing none, where they exceed
    MAX_TABLE_SHARE of the rows."""
    with model.lock:
        representative = _a_row_per_key(keys, len(kept.known))
        new = np.flatnonzero((representative >= 0) & ~kept.known)
        if len(new) > MAX_TABLE_SHARE * len(keys):
            return False
        if len(new):
            rows, summed = matrix[representative[new]], np.zeros((len(kept.used), len(new)))
            for t in kept.trees:
                vectors = _single_tree(booster, rows, t, threads)
                summed += vectors[:, kept.used].T
                model.bias[t] = vectors[0, -1]
            kept.columns[:, new] = summed
            kept.known[new] = True
        return True


def _block_table(model: _Model, booster: Booster, matrix: np.ndarray, t: int, keys: np.ndarray, threads: int,
                 ) -> _Table | None:
    """Tree `t`'s table for a block (a tree of more than DENSE_BITS internal nodes, keyed `keys`); None where
    its distinct keys exceed MAX_TABLE_SHARE of the rows."""
    tree, rows = model.trees[t], len(keys)
    if tree.internal <= KEYED_BITS:
        representative = _a_row_per_key(keys, 1 << tree.internal)
        first = representative[representative >= 0]
        slot = np.cumsum(representative >= 0, dtype=np.int32) - 1
        index = slot[keys.astype(np.intp)]
    else:
        if keys.ndim == 2:
            keys = np.ascontiguousarray(keys).view(np.dtype((np.void, 8 * keys.shape[1]))).ravel()
        _, first, index = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) > MAX_TABLE_SHARE * rows:
        return None
    vectors = _single_tree(booster, matrix[first], t, threads)
    model.bias[t] = vectors[0, -1]
    return tree.used, np.ascontiguousarray(vectors[:, tree.used].T), index.ravel().astype(np.int32)


def _add_tables(total: np.ndarray, tables: list[_Table], start: int, stop: int) -> None:
    """Add the tables' vectors of rows start:stop to `total` (features + 1, rows), table after table."""
    gathered = np.empty(stop - start)
    for used, columns, index in tables:
        index = index[start:stop].astype(np.intp)  # once, not in every take
        for j, feature in enumerate(used):
            np.take(columns[j], index, out=gathered, mode="clip")
            total[feature, start:stop] += gathered


def _add_block(model: _Model, booster: Booster, matrix: np.ndarray, total: np.ndarray,
               pool: ThreadPoolExecutor | None, threads: int) -> None:
    """Add every tree's contributions to the rows of `matrix` (a block) to `total` (features + 1, rows)."""
    rows, trees = len(matrix), model.trees
    chunks = [(start, min(start + CHUNK_ROWS, rows)) for start in range(0, rows, CHUNK_ROWS)]

    def each_chunk(work):  # chunks are independent: each writes its own rows
        list(pool.map(lambda chunk: work(*chunk), chunks) if pool else (work(*chunk) for chunk in chunks))

    # First pass, a chunk of rows at a time (each feature's cells found once for all trees): every key.
    cells = {f: np.empty(rows, dtype=np.intp) for f in model.features}
    keys = {t: np.empty((rows, trees[t].words) if trees[t].words > 1 else rows, dtype=trees[t].key_type)
            for t in model.others}

    def find_keys(start, stop):
        chunk_cells = {f: model.cells.of(matrix[start:stop, f], f) for f in (*model.cells.thresholds,
                                                                            *model.cells.categories)}
        for f, found in cells.items():
            found[start:stop] = chunk_cells[f]
        for t, found in keys.items():
            found[start:stop] = tree_keys(chunk_cells, trees[t], stop - start)

    each_chunk(find_keys)
    # Second pass: the features' tables, then tree after tree; LightGBM on every row where a table would not
    # pay. Consecutive tables are added a chunk of rows at a time.
    tables: list[_Table] = []

    def add_tables():
        each_chunk(lambda start, stop: _add_tables(total, tables, start, stop))
        tables.clear()

    def add_every_row(t):
        add_tables()
        vectors = _single_tree(booster, matrix, t, threads)
        for feature in trees[t].used:
            total[feature] += vectors[:, feature]
        model.bias[t] = vectors[0, -1]

    # A feature's column gets its table first, so its trees' vectors add up in the same order either way.
    for kept in model.features.values():
        if _filled(model, booster, matrix, kept, cells[kept.used[0]], threads):
            tables.append((kept.used, kept.columns, cells[kept.used[0]]))
        else:
            for t in kept.trees:
                add_every_row(t)
    for t in model.others:
        kept = model.kept.get(t)
        if kept is not None and _filled(model, booster, matrix, kept, keys[t], threads):
            tables.append((kept.used, kept.columns, keys[t]))
            continue
        table = None if kept is not None else _block_table(model, booster, matrix, t, keys.pop(t), threads)
        if table is not None:
            tables.append(table)
        else:
            add_every_row(t)
    add_tables()


def tree_contributions(booster: Booster, features, threads: int = 1) -> np.ndarray:
    """`booster.predict(features, pred_contrib=True)` (rows x (features + 1), the bias last) from per-tree
    tables: within rounding of it, the same whatever the other rows, `threads` and the entries kept from
    earlier calls (the module's docstring)."""
    model = _model_of(booster)
    matrix = lightgbm_matrix(booster, features) if model.covered and len(features) else None
    if matrix is None or matrix.ndim != 2 or matrix.shape[1] != model.width:
        return booster.predict(features, pred_contrib=True, num_threads=threads)
    total = np.zeros((model.width + 1, len(matrix)))  # feature-major: each feature's running sums are contiguous
    key_bytes = 8 * len(model.features) + sum(model.trees[t].words * np.dtype(model.trees[t].key_type).itemsize
                                              for t in model.others)
    block = max(CHUNK_ROWS, min(BLOCK_ROWS, KEY_BYTES // max(key_bytes, 1)))
    # numpy lets go of the GIL inside each operation on a chunk, so threads share the chunks.
    pool = ThreadPoolExecutor(threads) if threads > 1 and len(matrix) > CHUNK_ROWS else None
    try:
        for start in range(0, len(matrix), block):
            stop = min(start + block, len(matrix))
            _add_block(model, booster, matrix[start:stop], total[:, start:stop], pool, threads)
    finally:
        if pool:
            pool.shutdown()
    total[-1] = functools.reduce(operator.add, model.bias, 0.0)  # in tree order, as LightGBM adds them
    return np.ascontiguousarray(total.T)  # rows x (features + 1), as pred_contrib gives it
