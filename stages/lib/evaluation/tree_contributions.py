"""LightGBM's exact tree contributions (TreeSHAP, `pred_contrib`) from per-tree tables, for the cost of one
or two raw-score predicts instead of 25 or more (benchmarks/README.md, "Drift and reason codes").

TreeSHAP (LightGBM's `Tree::TreeSHAP`) visits every internal node of a tree for every row, and the row
enters only through the branch it takes at each of them: a tree's contribution vector for a row is a
function of the row's decisions at all the tree's internal nodes (not of its leaf alone: two rows in one
leaf that part ways at a node off their path get different vectors). So, per tree:

1. each row's decisions at every internal node, as LightGBM's `Tree::Decision` takes them, packed into one
   key (bit i: left at node i);
2. the keys that occur, and for each a row that has it;
3. LightGBM's own `pred_contrib` of that tree alone (`start_iteration=t, num_iteration=1`) on those rows:
   the tree's table, one vector per key that occurs;
4. each row's vector looked up by its key and added, tree after tree, to the rows x (features + 1) result
   (only in the columns of the features the tree splits on: the others' contributions are exactly 0).

A table's vector is bit for bit the one LightGBM computes for any row with that key (the same operations
on the same numbers), so each row's result is the sum, tree after tree, of LightGBM's single-tree vectors:
it does not depend on the other rows, on the thread count or on which path below computed a tree.
`pred_contrib` on the whole model adds each leaf's terms straight into one running sum instead, so the two
differ by rounding only: a few units in the last place (tests/test_tree_contributions.py holds them within
1e-12); the bias column adds the same per-tree expected values in the same order and is equal to the bit.

The keys (which way a row goes at each node, exactly as LightGBM decides, missing values and categorical
bitsets included) are stages.lib.evaluation.tree_decisions'.

The cut-off: where a tree's distinct keys exceed half the rows of the block (`MAX_TABLE_SHARE`), LightGBM
computes that tree on every row instead (the same vectors, so the same result): its table would cost more
than half of that, and the sorting and lookups on top would leave little saved. That happens with many
leaves (64-leaf trees have a key for 83-98 % of the rows in a batch of 20,000) or with few rows, never with
the committed model's 7-leaf trees (at most 64 keys each). No tree is too big to key: keys of up to 12
internal nodes index a table by the key itself, up to 16 through a slot per possible key (2^16 of them),
beyond that they are sorted (`np.unique`), in 64-bit words of 63 nodes; the share of distinct keys decides.
The whole model goes to `pred_contrib` where it has more than one tree per iteration (multiclass) or linear
trees (for which LightGBM has no contributions).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from lightgbm import Booster

from stages.lib.evaluation.tree_decisions import Cells, Tree, lightgbm_matrix, parse_trees, tree_keys

# A tree gets a table only where its distinct keys are at most this share of the block's rows.
MAX_TABLE_SHARE = 0.5
# Keys of up to DENSE_BITS internal nodes index a column entry per possible key; up to KEYED_BITS a slot per
# possible key points into the keys that occur; bigger trees' keys are sorted.
DENSE_BITS = 12
KEYED_BITS = 16
# Rows added at a time: the running sums of a chunk stay in cache while every tree adds to them.
CHUNK_ROWS = 1 << 15
# Rows whose tables are built together: up to 2^17, fewer where the trees' keys would take more than
# KEY_BYTES (they are kept from the first pass over a block to the second).
BLOCK_ROWS = 1 << 17
KEY_BYTES = 64 << 20
# pred_contrib on fewer rows runs on one thread: on a busy machine every parallel region waits for the
# turn of its slowest thread, which costs more than a few hundred rows of work.
PARALLEL_ROWS = 4096


class _Table:
    """One tree's vectors for a block of rows: row r's contribution to feature `used[j]` is
    `columns[j][index[r]]`; `bias` is the tree's expected value (the same for every row)."""

    def __init__(self, used: np.ndarray, columns: np.ndarray, index: np.ndarray, bias: float):
        self.used, self.columns, self.index, self.bias = used, columns, index, bias


def _single_tree(booster: Booster, rows: np.ndarray, t: int, threads: int) -> np.ndarray:
    """LightGBM's pred_contrib of tree `t` alone: each row's vector, the tree's expected value last."""
    return booster.predict(rows, pred_contrib=True, start_iteration=t, num_iteration=1,
                           num_threads=threads if len(rows) >= PARALLEL_ROWS else 1)


def _table(booster: Booster, matrix: np.ndarray, t: int, tree: Tree, keys: np.ndarray, threads: int,
           ) -> _Table | None:
    """Tree `t`'s table for the rows of `matrix`, whose keys are `keys`; None where its distinct keys exceed
    MAX_TABLE_SHARE of the rows."""
    rows, used = len(keys), tree.used
    if tree.internal <= KEYED_BITS:
        # A row per key that occurs, by key (any will do: every row with a key gets the same vector, bit for
        # bit); -1 where none does.
        index = keys.astype(np.intp)
        representative = np.full(1 << tree.internal, -1, dtype=np.intp)
        representative[index] = np.arange(rows)
        present = np.flatnonzero(representative >= 0)
        if len(present) > MAX_TABLE_SHARE * rows:
            return None
        vectors = _single_tree(booster, matrix[representative[present]], t, threads)
        if tree.internal <= DENSE_BITS:  # a column entry per possible key, found by the key itself
            columns = np.zeros((len(used), 1 << tree.internal))
            columns[:, present] = vectors[:, used].T
            return _Table(used, columns, keys, vectors[0, -1])
        slot = np.zeros(1 << tree.internal, dtype=np.int32)
        slot[present] = np.arange(len(present), dtype=np.int32)
        return _Table(used, np.ascontiguousarray(vectors[:, used].T), slot[index], vectors[0, -1])
    if keys.ndim == 2:
        keys = np.ascontiguousarray(keys).view(np.dtype((np.void, 8 * keys.shape[1]))).ravel()
    _, first, index = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) > MAX_TABLE_SHARE * rows:
        return None
    vectors = _single_tree(booster, matrix[first], t, threads)
    return _Table(used, np.ascontiguousarray(vectors[:, used].T), index.ravel().astype(np.int32), vectors[0, -1])


def _add_tables(total: np.ndarray, tables: list[_Table], start: int, stop: int) -> None:
    """Add the tables' vectors of rows start:stop to `total` (features + 1, rows), table after table."""
    gathered = np.empty(stop - start)
    for table in tables:
        index = table.index[start:stop].astype(np.intp)  # once, not in every take
        for j, feature in enumerate(table.used):
            np.take(table.columns[j], index, out=gathered, mode="clip")
            total[feature, start:stop] += gathered
        total[-1, start:stop] += table.bias


def _add_block(booster: Booster, trees: list[Tree], cells: Cells, matrix: np.ndarray, total: np.ndarray,
               pool: ThreadPoolExecutor | None, threads: int) -> None:
    """Add every tree's contributions to the rows of `matrix` (a block) to `total` (features + 1, rows)."""
    rows = len(matrix)
    chunks = [(start, min(start + CHUNK_ROWS, rows)) for start in range(0, rows, CHUNK_ROWS)]

    def each_chunk(work):  # chunks are independent: each writes its own rows
        list(pool.map(lambda chunk: work(*chunk), chunks) if pool else (work(*chunk) for chunk in chunks))

    # First pass, a chunk of rows at a time (each feature's cells found once for all trees): every key.
    keys = [np.empty((rows, tree.words) if tree.words > 1 else rows, dtype=tree.key_type) for tree in trees]

    def find_keys(start, stop):
        chunk_cells = {f: cells.of(matrix[start:stop, f], f) for f in (*cells.thresholds, *cells.categories)}
        for tree, found in zip(trees, keys):
            found[start:stop] = tree_keys(chunk_cells, tree, stop - start)

    each_chunk(find_keys)
    # Second pass, tree after tree: its table, or LightGBM on every row where a table would not pay;
    # consecutive tables are added a chunk of rows at a time.
    tables: list[_Table] = []

    def add_tables():
        each_chunk(lambda start, stop: _add_tables(total, tables, start, stop))
        tables.clear()

    for t, tree in enumerate(trees):
        table = _table(booster, matrix, t, tree, keys[t], threads)
        keys[t] = None
        if table is not None:
            tables.append(table)
            continue
        add_tables()
        vectors = _single_tree(booster, matrix, t, threads)
        for feature in tree.used:
            total[feature] += vectors[:, feature]
        total[-1] += vectors[:, -1]
    add_tables()


def tree_contributions(booster: Booster, features, threads: int = 1) -> np.ndarray:
    """`booster.predict(features, pred_contrib=True)` (rows x (features + 1), the bias last) from per-tree
    tables: within rounding of it, the same whatever the other rows and `threads` (the module's docstring)."""
    header, trees = parse_trees(booster.model_to_string())  # the trees predict uses (up to a best iteration)
    width = int(header.get("max_feature_idx", "-1")) + 1
    if int(header.get("num_tree_per_iteration", "1")) != 1 or any(tree.linear for tree in trees) or not len(features):
        return booster.predict(features, pred_contrib=True, num_threads=threads)
    matrix = lightgbm_matrix(booster, features)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        return booster.predict(features, pred_contrib=True, num_threads=threads)
    cells = Cells(trees)
    total = np.zeros((width + 1, len(matrix)))  # feature-major: each feature's running sums are contiguous
    key_bytes = sum(tree.words * np.dtype(tree.key_type).itemsize for tree in trees)
    block = max(CHUNK_ROWS, min(BLOCK_ROWS, KEY_BYTES // max(key_bytes, 1)))
    # numpy lets go of the GIL inside each operation on a chunk, so threads share the chunks.
    pool = ThreadPoolExecutor(threads) if threads > 1 and len(matrix) > CHUNK_ROWS else None
    try:
        for start in range(0, len(matrix), block):
            stop = min(start + block, len(matrix))
            _add_block(booster, trees, cells, matrix[start:stop], total[:, start:stop], pool, threads)
    finally:
        if pool:
            pool.shutdown()
    return np.ascontiguousarray(total.T)  # rows x (features + 1), as pred_contrib gives it
