"""Which way each row goes at every internal node of a LightGBM model, exactly as LightGBM decides.

The model is read from `model_to_string()` (its thresholds are exact, 17 significant
digits; `dump_model()` rounds them). A value within 1e-35 of 0 is 0 (LightGBM's dense
predict drops it). A numerical split goes left when `value <= threshold`, except that a
missing value takes the default side (`decision_type` bit 1): NaN where the missing type
(bits 2-3) is NaN; 0, and NaN as 0, where it is Zero; with missing type None NaN is
compared as 0. A categorical split (bit 0) goes left when the value, truncated to an
integer, is in the node's bitset (`cat_threshold` words from `cat_boundaries[threshold]`);
NaN, negative values, values past the bitset and values an int cannot hold go right. A
DataFrame becomes the matrix LightGBM's predict builds by LightGBM's own conversion
(categories as the training levels' codes, unseen levels and NaN as NaN), so the
decisions see the numbers LightGBM sees.

A tree's decisions are packed into a key (bit i: left at internal node i; words of 63
bits for bigger trees). They are found per feature, not per node: each row's cell among
all the model's thresholds on the feature (or its category), then per tree one small
lookup per feature that gives the bits of all the tree's nodes on it at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import Booster
from lightgbm.basic import _data_from_pandas

# LightGBM's kZeroThreshold (1e-35f): a value within it of 0 is 0 to a tree.
ZERO = float(np.float32(1e-35))
# Bits of a key word: 63, so that every word is a non-negative int64.
WORD_BITS = 63
# static_cast<int> of a value at or past 2^31 is INT_MIN on x86: negative, so right.
INT_LIMIT = 2.0**31

_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_ZERO, _MISSING_NAN = 1, 2


class Tree:
    """One tree's internal nodes (LightGBM's arrays) and what its keys need."""

    def __init__(self, fields: dict[str, str]):
        internal = int(fields["num_leaves"]) - 1
        self.features = _numbers(fields, "split_feature", int)[:internal]
        self.thresholds = _numbers(fields, "threshold", float)[:internal]
        self.decision_types = _numbers(fields, "decision_type", int)[:internal]
        self.linear = fields.get("is_linear", "0").strip() == "1"
        boundaries = _numbers(fields, "cat_boundaries", int)
        words = np.array([int(v) for v in fields.get("cat_threshold", "").split()], dtype="<u4")
        # Each categorical node's categories that go left, as a boolean array by category.
        self.left_categories: dict[int, np.ndarray] = {}
        for node in range(internal):
            if self.decision_types[node] & _CATEGORICAL:
                index = int(self.thresholds[node])
                bitset = words[boundaries[index]:boundaries[index + 1]]
                self.left_categories[node] = np.unpackbits(bitset.view(np.uint8), bitorder="little").astype(bool)
        self.used = np.unique(self.features)  # the features whose contributions the tree changes
        self.words = max(1, -(-internal // WORD_BITS))
        self.key_type = key_type_of(internal)
        # Per used feature, the bits its nodes give the key in each of the feature's cells (Cells).
        self.lookups: list[tuple[int, np.ndarray]] = []

    @property
    def internal(self) -> int:
        return len(self.features)


def _numbers(fields: dict[str, str], key: str, kind) -> np.ndarray:
    return np.array([kind(v) for v in fields.get(key, "").split()], dtype=np.float64 if kind is float else np.int64)


def key_type_of(internal: int):
    """The narrowest type that holds a key word of `internal` bits."""
    for kind in (np.uint8, np.uint16, np.uint32):
        if internal <= 8 * np.dtype(kind).itemsize:
            return kind
    return np.int64


def parse_trees(text: str) -> tuple[dict[str, str], list[Tree]]:
    """(the header's fields, the trees) of LightGBM's `model_to_string()`."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in text.split("\n"):
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line.startswith("end of trees"):
            break
        else:
            key, sep, value = line.partition("=")
            if sep:
                current[key] = value
    return header, [Tree(fields) for fields in trees]


class Cells:
    """Every feature's cells: rows in one cell of a feature take the same side at every node on it.

    A numerical feature's cells are 0..m for the values with 0..m of the model's m thresholds on it below
    them (`value <= threshold[j]` is cell <= j), then one for 0 and one for NaN. A categorical feature's are
    the categories below the largest bitset on it, then one for every value that goes right at every node.
    """

    def __init__(self, trees: list[Tree]):
        self.thresholds: dict[int, np.ndarray] = {}
        self.categories: dict[int, int] = {}
        for tree in trees:
            for node in range(tree.internal):
                feature = int(tree.features[node])
                if node in tree.left_categories:
                    self.categories[feature] = max(self.categories.get(feature, 0), len(tree.left_categories[node]))
                else:
                    self.thresholds.setdefault(feature, set()).add(float(tree.thresholds[node]))
        if self.thresholds.keys() & self.categories.keys():
            raise ValueError("a feature split both as a number and as a category")
        self.thresholds = {f: np.array(sorted(values)) for f, values in self.thresholds.items()}
        for tree in trees:
            tree.lookups = [(int(f), self._lookup(tree, int(f))) for f in tree.used]

    def count(self, feature: int) -> int:
        if feature in self.categories:
            return self.categories[feature] + 1
        return len(self.thresholds[feature]) + 3

    def _lookup(self, tree: Tree, feature: int) -> np.ndarray:
        """(words, cells of `feature`): the key bits of `tree`'s nodes on `feature`, by the row's cell."""
        cells = self.count(feature)
        lookup = np.zeros((tree.words, cells), dtype=tree.key_type)
        for node in np.flatnonzero(tree.features == feature):
            word, bit = divmod(int(node), WORD_BITS)
            lookup[word] |= self._left(tree, int(node), feature, cells).astype(tree.key_type) << bit
        return lookup

    def _left(self, tree: Tree, node: int, feature: int, cells: int) -> np.ndarray:
        """Whether each cell of `feature` goes left at `node`: LightGBM's Tree::Decision."""
        kind = int(tree.decision_types[node])
        default_left = bool(kind & _DEFAULT_LEFT)
        if node in tree.left_categories:
            categories = tree.left_categories[node]
            left = np.zeros(cells, dtype=bool)
            left[:len(categories)] = categories  # the last cell (NaN, negative, past every bitset): right
            return left
        threshold = tree.thresholds[node]
        position = int(np.searchsorted(self.thresholds[feature], threshold))
        left = np.arange(cells) <= position  # a value with `cell` thresholds below it: value <= threshold
        missing = (kind >> 2) & 3
        left[-2] = default_left if missing == _MISSING_ZERO else 0.0 <= threshold  # 0
        left[-1] = default_left if missing in (_MISSING_ZERO, _MISSING_NAN) else 0.0 <= threshold  # NaN
        return left

    def of(self, values: np.ndarray, feature: int) -> np.ndarray:
        """Each row's cell of `feature`, from its column of LightGBM's matrix."""
        values = values.astype(np.float64)
        values[np.abs(values) <= ZERO] = 0.0
        if feature in self.categories:
            whole = np.trunc(values)
            inside = (whole >= 0) & (whole < min(self.categories[feature], INT_LIMIT))  # NaN: False
            return np.where(inside, whole, self.categories[feature]).astype(np.intp)
        thresholds = self.thresholds[feature]
        cells = np.searchsorted(thresholds, values)
        cells[values == 0.0] = len(thresholds) + 1
        cells[np.isnan(values)] = len(thresholds) + 2
        return cells


def tree_keys(cells: dict[int, np.ndarray], tree: Tree, rows: int) -> np.ndarray:
    """Each row's decisions at every internal node of `tree`: (rows,) keys, or (rows, words) for trees of more
    than WORD_BITS internal nodes."""
    keys = np.zeros((tree.words, rows), dtype=tree.key_type)
    bits = np.empty(rows, dtype=tree.key_type)
    for feature, lookup in tree.lookups:
        for word in range(tree.words):
            np.take(lookup[word], cells[feature], out=bits, mode="clip")
            keys[word] |= bits
    return keys[0] if tree.words == 1 else keys.T


def lightgbm_matrix(booster: Booster, features) -> np.ndarray:
    """The matrix LightGBM's predict builds from `features` (a DataFrame's categories as the training codes)."""
    if isinstance(features, pd.DataFrame):
        return _data_from_pandas(features, "auto", "auto", booster.pandas_categorical)[0]
    return np.asarray(features)
