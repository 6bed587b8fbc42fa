"""Exact medians and deciles of a column spread over partitions, from histograms of its float32 bits.

A float32's bits, flipped so that their order as unsigned integers is the
numbers' order, are counted by their high 16 bits; then, within the bins holding
the ranks wanted (the middle ones, the deciles), by their low 16 bits. Each
partition counts its own values, counts add up, and the value of any rank is
found exactly (pandas' median of the float32 column, to the bit) without any
process holding the column. The counts are sparse (a Series of the bins that
occur), so a partition's statistics stay small.

`rank_positions` is the one search for "which bin holds the r-th smallest value":
the split's and the samples' cut-off keys (stages.lib.data.sampling) use it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.data import drift

HALF_BITS = 16
LOW_MASK = (1 << HALF_BITS) - 1


def sortable_bits(values: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))


def float_of(key: int) -> np.float32:
    bits = key & 0x7FFFFFFF if key >> 31 else ~key & 0xFFFFFFFF
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def bin_counts(bins: np.ndarray) -> pd.Series:
    """How often each bin (a 16-bit number) occurs, indexed by the bins that do, in order."""
    counts = np.bincount(bins.astype(np.int64), minlength=1 << HALF_BITS)
    present = np.flatnonzero(counts)
    return pd.Series(counts[present], index=present.astype(np.int64))


def added_counts(first: pd.Series, second: pd.Series) -> pd.Series:
    return first.add(second, fill_value=0).astype(np.int64).sort_index()


def sum_counts(counts: list[pd.Series]) -> pd.Series:
    total = counts[0]
    for more in counts[1:]:
        total = added_counts(total, more)
    return total


def rank_positions(counts: np.ndarray, ranks: list[int]) -> list[tuple[int, int]]:
    """For each rank (0: the smallest value), the position of the bin holding it in `counts` (values per
    bin, in order) and its rank inside that bin."""
    cumulative = np.cumsum(counts)
    found = []
    for rank in ranks:
        which = int(np.searchsorted(cumulative, rank, side="right"))
        found.append((which, rank - (int(cumulative[which - 1]) if which else 0)))
    return found


def _bins_of_ranks(histogram: pd.Series, ranks: list[int]) -> list[tuple[int, int]]:
    """For each rank, the bin (its index label) holding it and its rank inside that bin."""
    return [(int(histogram.index[which]), within) for which, within in rank_positions(histogram.to_numpy(), ranks)]


def _middle_ranks(histogram: pd.Series) -> list[tuple[int, int]]:
    """The bins holding the two middle ranks (the one middle rank twice, for an odd count)."""
    count = int(histogram.sum())
    return _bins_of_ranks(histogram, [(count - 1) // 2, count // 2])


def needed_bins(histogram: pd.Series) -> list[int]:
    """The high halves whose low halves the median and the deciles need."""
    if not histogram.sum():
        return []
    ranks = _middle_ranks(histogram) + _bins_of_ranks(histogram, drift.decile_ranks(int(histogram.sum())))
    return sorted({bin_high for bin_high, _ in ranks})


def numeric_bins(column: str, high: pd.Series, low: dict[tuple[str, int], pd.Series], rows: int) -> drift.FeatureBins:
    """The column's drift bins from its histograms: decile values and how many values are at most each,
    as `drift.numeric_bins_of` finds them on the column itself."""
    present = int(high.sum())
    keys = []
    for bin_high, rank in _bins_of_ranks(high, drift.decile_ranks(present)):
        [(bin_low, _)] = _bins_of_ranks(low[(column, bin_high)], [rank])
        keys.append((bin_high << HALF_BITS) | bin_low)
    edges, at_most = [], []
    for key in sorted(set(keys)):
        bin_high, bin_low = key >> HALF_BITS, key & LOW_MASK
        within = low[(column, bin_high)]
        count = int(high[high.index < bin_high].sum()) + int(within[within.index <= bin_low].sum())
        value = float_of(key)
        if edges and value == edges[-1]:  # -0.0 and 0.0: one value to a comparison
            at_most[-1] = count
        else:
            edges.append(value)
            at_most.append(count)
    return drift.numeric_bins(column, np.array(edges, np.float32), np.array(at_most), present, rows)


def medians(high: dict[str, pd.Series], low: dict[tuple[str, int], pd.Series]) -> dict[str, float]:
    """Each column's median from its histograms, as pandas computes it for float32 (NaN without values)."""
    medians = {}
    for column, histogram in high.items():
        if not histogram.sum():
            medians[column] = float("nan")
            continue
        values = []
        for bin_high, rank in _middle_ranks(histogram):
            [(bin_low, _)] = _bins_of_ranks(low[(column, bin_high)], [rank])
            values.append(float_of((bin_high << HALF_BITS) | bin_low))
        medians[column] = float((values[0] + values[1]) / np.float32(2))
    return medians
