"""Which customers are held out for testing and which rows each sample keeps: one algorithm for every engine.

Every row gets a seeded 64-bit key: for the split, a hash of its customer ID (of
its row number in the table when there are no ID columns); for a sample of a
processed split, a hash of its row number in that split. Of each class, the
test split (and a sample) keeps the rows with the smallest keys, as many as the
class's quota: round(test_size x its rows) for the split, its share of the
sample's rows for a sample. So the split is stratified, a customer keeps its side
however the table is cut into files, and a row's fate depends on the seed and
the class counts only, never on the order or the engine that computes it.

The quota-th smallest key is found without holding the keys: each partition
counts its keys by their top KEY_BIN_BITS bits (`key_bins`), the counts are
added up, and only the keys in the bin holding the quota-th one are collected
(`keys_in_bins`, about rows / 65,536 of them). The local engine runs these
functions on its one partition, the Dask engine on each file; the answer is
the same exact key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError
from stages.lib.core.hashing import row_numbers, seeded_hash
from stages.lib.core.tables import read_table
from stages.lib.data.quantiles import rank_positions
from stages.lib.data.schema import LABEL, SNAPSHOT, split_features
from stages.lib.engines.base import Engine, Table

# What a key is for: mixed into the hash, so a split key and a sample key of the same number differ.
SPLIT, SAMPLE = "split", "sample"
KEY_BIN_BITS = 16
_SHIFT = np.uint64(64 - KEY_BIN_BITS)

Counts = dict[int, int]           # rows of each class (0: non-buyers, 1: buyers)
Cutoffs = dict[int, int | None]   # of each class, the largest key kept (None: no row of the class kept)


def split_keys(frame: pd.DataFrame, offset: int, id_columns: list[str], seed: int) -> np.ndarray:
    """Each customer's split key: a hash of its IDs, or of its row number in the table without ID columns."""
    keys = frame[list(id_columns)] if id_columns else row_numbers(offset, len(frame))
    return seeded_hash(keys, seed, SPLIT)


def sample_keys(offset: int, count: int, seed: int) -> np.ndarray:
    """The sample keys of `count` rows of a processed split starting at row `offset`."""
    return seeded_hash(row_numbers(offset, count), seed, SAMPLE)


def class_counts(labels: np.ndarray) -> Counts:
    buyers = int(np.sum(labels == 1))
    return {0: len(labels) - buyers, 1: buyers}


def split_quotas(counts: Counts, test_size: float) -> Counts:
    """Test rows of each class: round(test_size x its rows)."""
    return {label: int(round(rows * test_size)) for label, rows in counts.items()}


def sample_quotas(counts: Counts, rows: int) -> Counts:
    """Rows of each class in a sample of `rows` rows: the buyers' share, rounded; the rest non-buyers."""
    total = sum(counts.values())
    buyers = min(counts[1], int(round(rows * counts[1] / total)))
    return {0: min(counts[0], rows - buyers), 1: buyers}


def key_bins(keys: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Of each class, how many keys fall in each of the 2**KEY_BIN_BITS bins of their top bits."""
    return {label: np.bincount((keys[labels == label] >> _SHIFT).astype(np.int64), minlength=1 << KEY_BIN_BITS)
            for label in (0, 1)}


def added_bins(pieces: list[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    return {label: np.sum([piece[label] for piece in pieces], axis=0) for label in (0, 1)}


def bins_of_quotas(bins: Mapping[int, np.ndarray], quotas: Counts) -> dict[int, tuple[int, int]]:
    """Of each class with a quota, the bin holding its quota-th smallest key and that key's rank in the bin."""
    return {label: rank_positions(bins[label], [quota - 1])[0] for label, quota in quotas.items() if quota >= 1}


def keys_in_bins(keys: np.ndarray, labels: np.ndarray, bins: Mapping[int, tuple[int, int]]) -> dict[int, np.ndarray]:
    """Of each class, the keys in its bin."""
    high = keys >> _SHIFT
    return {label: keys[(labels == label) & (high == np.uint64(which))] for label, (which, _) in bins.items()}


def joined_keys(pieces: list[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    labels = {label for piece in pieces for label in piece}
    return {label: np.concatenate([piece[label] for piece in pieces]) for label in labels}


def cutoffs_of(bins: Mapping[int, tuple[int, int]], keys: Mapping[int, np.ndarray]) -> Cutoffs:
    """Of each class, its quota-th smallest key (None for a class whose quota is 0)."""
    cutoffs: Cutoffs = {0: None, 1: None}
    for label, (_, rank) in bins.items():
        cutoffs[label] = int(np.sort(keys[label])[rank])
    return cutoffs


def kept(keys: np.ndarray, labels: np.ndarray, cutoffs: Cutoffs) -> np.ndarray:
    """The rows whose key is at most their class's cutoff: the quota-th smallest and all below it.

    Keys of distinct row numbers never tie; keys of distinct IDs tie only when 64-bit hashes
    collide, and then both rows are kept, on every engine alike.
    """
    keep = np.zeros(len(keys), dtype=bool)
    for label, cutoff in cutoffs.items():
        if cutoff is not None:
            keep |= (labels == label) & (keys <= np.uint64(cutoff))
    return keep


def _label_counts(frame: pd.DataFrame, offset: int) -> Counts:
    return class_counts(frame[LABEL].to_numpy())


def _added_counts(pieces: list[Counts]) -> Counts:
    return {label: sum(piece[label] for piece in pieces) for label in (0, 1)}


def _sample_bins(frame: pd.DataFrame, offset: int, seed: int) -> dict[int, np.ndarray]:
    return key_bins(sample_keys(offset, len(frame), seed), frame[LABEL].to_numpy())


def _sample_keys_in_bins(frame: pd.DataFrame, offset: int, seed: int, bins) -> dict[int, np.ndarray]:
    return keys_in_bins(sample_keys(offset, len(frame), seed), frame[LABEL].to_numpy(), bins)


def _sampled(frame: pd.DataFrame, offset: int, seed: int, cutoffs: Cutoffs) -> pd.DataFrame:
    keys = sample_keys(offset, len(frame), seed)
    return frame[kept(keys, frame[LABEL].to_numpy(), cutoffs)]


def sample_table(engine: Engine, path: Table, rows: int | None, seed: int) -> pd.DataFrame:
    """A stratified sample of at most `rows` rows (None: every row) of a processed split, in table order.

    Of each class, its share of `rows` (stages.lib.data.sampling.sample_quotas): the rows with the
    smallest sample keys. The partitions are read for their labels to choose, and only the rows
    kept come back to this process.
    """
    counts = engine.map(_label_counts, path, columns=[LABEL], combine=_added_counts)
    if rows is None or rows >= sum(counts.values()):
        return engine.gather(path)
    quotas = sample_quotas(counts, rows)
    where = bins_of_quotas(engine.map(_sample_bins, path, seed, columns=[LABEL], combine=added_bins), quotas)
    in_bins = engine.map(_sample_keys_in_bins, path, seed, where, columns=[LABEL], combine=joined_keys)
    frames = engine.map(_sampled, path, seed, cutoffs_of(where, in_bins))
    return pd.concat(frames, ignore_index=True)


def sample_features(engine: Engine, path: Table, rows: int | None, seed: int,
                    id_columns: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Features, labels and snapshot dates (None: an undated table) of a processed split: every row, or a
    stratified sample of at most `rows` rows (`sample_table`), chosen where the engine keeps the split."""
    table = sample_table(engine, path, rows, seed)
    features, y = split_features(table, id_columns, str(path))
    return features, y, table[SNAPSHOT].to_numpy() if SNAPSHOT in table.columns else None


def read_labels(path: Table) -> np.ndarray:
    """The 0/1 labels of a processed split (a file or partitioned), read without its features."""
    try:
        return read_table(path, columns=[LABEL])[LABEL].to_numpy(np.int8)
    except DataError:
        # No label column (not a table preprocess wrote) or an unreadable file: the whole read says which.
        return split_features(read_table(path), [], str(path))[1]
