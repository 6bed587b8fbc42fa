"""Whether a table of customers looks like the training split: each feature's population stability index.

`preprocess` saves, with the preprocessor, each input feature's reference
distribution on the training split: for a number, its counts in the bins cut by
its training deciles (exact, from the same bit histograms as the medians:
stages/lib/data/split.py) plus a bin for missing values; for a category, its
counts in the preprocessor's levels (`__missing__`, `__other__`: rare or unseen,
then each frequent level). `stages.predict` counts the table it scores in the
same bins, batch by batch or partition by partition (counts add up, so the
answer does not depend on the engine or the batch size), and compares shares:

    PSI = sum over bins of (now - then) x ln(now / then)

with shares below SHARE_FLOOR raised to it, so an empty bin counts as rare, not
as infinitely surprising. By the usual rule of thumb, below 0.1 is stable, 0.1 to
0.25 a moderate shift, above 0.25 a large one (`stages.predict --drift-threshold`,
default 0.2). PSI never changes a score.

`evaluate` counts the processed test split the same way (missing values known
from the `__missing` indicator columns) and records its PSI per feature in
metrics.json: what no drift looks like on this many rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DECILES = 10
SHARE_FLOOR = 1e-4
DEFAULT_THRESHOLD = 0.2


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins and the training split's counts in them; the last bin holds missing values.

    A number's bins are (-inf, edges[0]], (edges[0], edges[1]], ..., (edges[-1], inf), missing;
    a category's are its levels (codes 0, 1, ...), missing. A category's `__missing__` level is
    its missing bin, so its counts have one entry per level."""

    feature: str
    kind: str                      # "numeric" or "categorical"
    edges: tuple[float, ...]       # numeric: float32 decile values, increasing; categorical: ()
    levels: tuple[str, ...]        # categorical: the preprocessor's levels; numeric: ()
    counts: tuple[int, ...]

    @property
    def rows(self) -> int:
        return int(sum(self.counts))

    def missing_bin(self) -> int:
        return 0 if self.kind == "categorical" else len(self.counts) - 1


@dataclass(frozen=True)
class DriftReference:
    """The training split's distribution of every input feature, in the preprocessor's column order."""

    features: tuple[FeatureBins, ...]

    def names(self) -> list[str]:
        return [f.feature for f in self.features]


def numeric_bins(feature: str, edges: np.ndarray, at_most: np.ndarray, present: int, rows: int) -> FeatureBins:
    """A number's bins from its decile values (`edges`, increasing), how many training values are at most
    each edge (`at_most`), how many are present and how many training rows there are."""
    cumulative = np.concatenate([[0], np.asarray(at_most, dtype=np.int64), [present]])
    counts = np.diff(cumulative).tolist() + [rows - present]
    return FeatureBins(feature, "numeric", tuple(float(e) for e in np.asarray(edges, np.float32)), (),
                       tuple(int(c) for c in counts))


def decile_ranks(present: int) -> list[int]:
    """The ranks (0: the smallest value) whose values cut a number's bins."""
    return sorted({(present - 1) * k // DECILES for k in range(1, DECILES)}) if present else []


def numeric_bins_of(feature: str, values: np.ndarray) -> FeatureBins:
    """`numeric_bins` straight from a column's float32 values (NaN: missing), for a table in memory."""
    present = np.sort(values[~np.isnan(values)])
    edges = np.unique(present[decile_ranks(len(present))]).astype(np.float32)
    at_most = np.searchsorted(present, edges, side="right")
    return numeric_bins(feature, edges, at_most, len(present), len(values))


def categorical_bins(feature: str, levels: list[str], level_counts: pd.Series, rows: int) -> FeatureBins:
    """A category's bins: the preprocessor's `levels` (missing, other, frequent ones), counted from the
    training split's `category_counts` (missing values not counted) and its number of rows."""
    frequent = [int(level_counts.get(level, 0)) for level in levels[2:]]
    present = int(level_counts.sum())
    counts = [rows - present, present - sum(frequent)] + frequent
    return FeatureBins(feature, "categorical", (), tuple(levels), tuple(counts))


def count_bins(bins: FeatureBins, values: np.ndarray) -> np.ndarray:
    """How many of `values` fall in each of the feature's bins: float32 numbers (NaN: missing) or a
    category's level codes (0: missing)."""
    if bins.kind == "categorical":
        return np.bincount(values, minlength=len(bins.counts)).astype(np.int64)
    missing = np.isnan(values)
    placed = np.searchsorted(np.asarray(bins.edges, np.float32), values[~missing], side="left")
    counts = np.bincount(placed, minlength=len(bins.edges) + 1).astype(np.int64)
    return np.append(counts, int(missing.sum()))


def table_counts(reference: DriftReference, numbers: pd.DataFrame,
                 codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature's counts in its bins for one batch: `numbers` float32 with NaN for missing values,
    `codes` each category's level codes. Batches' counts add up (`added_counts`)."""
    return {bins.feature: count_bins(bins, numbers[bins.feature].to_numpy(np.float32) if bins.kind == "numeric"
                                     else np.asarray(codes[bins.feature]))
            for bins in reference.features}


def added_counts(pieces: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
    """Batches' or partitions' counts added up; None when none has counts (no rows, or no reference)."""
    pieces = [piece for piece in pieces if piece is not None]
    return {feature: sum(piece[feature] for piece in pieces) for feature in pieces[0]} if pieces else None


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of `actual` counts against `expected` counts in the same bins."""
    then = np.maximum(np.asarray(expected, np.float64) / max(np.sum(expected), 1), SHARE_FLOOR)
    now = np.maximum(np.asarray(actual, np.float64) / max(np.sum(actual), 1), SHARE_FLOOR)
    return float(np.sum((now - then) * np.log(now / then)))


def drift_table(reference: DriftReference, counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """feature, psi, missing share in training and now: one row per input feature, largest PSI first
    (ties in the preprocessor's column order)."""
    rows = []
    for bins in reference.features:
        now = counts[bins.feature]
        rows.append({
            "feature": bins.feature,
            "psi": round(psi(np.asarray(bins.counts), now), 6),
            "missing_share_training": round(bins.counts[bins.missing_bin()] / max(bins.rows, 1), 6),
            "missing_share_now": round(int(now[bins.missing_bin()]) / max(int(now.sum()), 1), 6),
        })
    table = pd.DataFrame(rows, columns=["feature", "psi", "missing_share_training", "missing_share_now"])
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def drifted(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The rows of a `drift_table` whose PSI is above `threshold`."""
    return table[table["psi"] > threshold]


def warning_line(table: pd.DataFrame, threshold: float, rows: int) -> str | None:
    """One `warning: drift:` line naming the features above the threshold, or None when there are none."""
    above = drifted(table, threshold)
    if above.empty:
        return None
    named = ", ".join(f"{row.feature} (PSI {row.psi:.2f})" for row in above.itertuples())
    return (f"warning: drift: {len(above)} feature(s) differ from the training data (PSI above {threshold:g}) in "
            f"{rows:,} scored customers: {named}; scores on drifted features may be off, check the input or "
            "retrain on recent customers")


def report(table: pd.DataFrame | None, threshold: float, rows: int) -> dict:
    """`stages.predict --drift-report`'s JSON: the rows scored, the threshold, and every feature's row of
    the `drift_table` with whether it is above the threshold (no features for a table without rows)."""
    features = [] if table is None else [
        {**record, "drifted": bool(record["psi"] > threshold)} for record in table.to_dict(orient="records")]
    return {"rows": rows, "threshold": threshold, "features": features}
