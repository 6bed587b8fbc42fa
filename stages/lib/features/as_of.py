"""The customer x snapshot table, as of each snapshot: one function for training and for scoring.

For every snapshot cutoff (its date at 00:00) and every customer who joined
before it: per event table and window N of features.windows the events in
[cutoff - N days, cutoff): their count and the declared sums and means; the
days since the last event before the cutoff (missing, with `no_<table>_yet` = 1,
when there is none); the tenure in days; the customer's static attributes; and,
for training, the label: an event of features.label_table in [cutoff, cutoff +
features.label_window_days). An event at or after a cutoff reaches no feature of
that snapshot, so truncating the events at the cutoff changes nothing
(tests/test_features.py proves it).

Each customer's values come from that customer's events alone, summed in the
events' own order (numpy's reduceat over each window's run of sorted events), so
the result is the same bits for a part of the customers as for all of them: an
engine may cut the customers into partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from stages.lib.core.params_features import FeaturesParams
from stages.lib.features.event_tables import EventTable

DAY_NS = 86_400 * 10**9
SECOND_NS = 10**9


class SortedEvents:
    """One table's events sorted by (customer, time), searchable by (customer, time bound)."""

    def __init__(self, table: EventTable, customers: int):
        if table.ordered:
            customer, self.time, values = table.customer, table.time, table.values
        else:
            order = np.lexsort((table.time, table.customer))  # stable: ties keep the file's order
            customer, self.time = table.customer[order], table.time[order]
            values = {name: column[order] for name, column in table.values.items()}
        # Values padded with one zero so every run's end is a valid reduceat index; each column is taken
        # from `values` as it is padded, so the columns are not held twice (an ordered table hands its columns
        # over: they leave its `values`).
        self.values = {}
        for name in list(values):
            column = values.pop(name)
            self.values[name] = np.append(column, np.zeros(1, column.dtype))
            del column
        self.starts = np.searchsorted(customer, np.arange(customers), side="left")
        # Bounds are whole seconds (a cutoff is a date at 00:00, windows are whole days), so comparing whole
        # seconds is exact, and a customer x seconds key fits in 64 bits.
        seconds = self.time // SECOND_NS
        self.origin = int(seconds.min()) if len(seconds) else 0
        self.span = (int(seconds.max()) - self.origin + 2) if len(seconds) else 2
        if customers * self.span >= 2**62:
            raise ValueError("events span too long for the customer x time key")
        seconds -= self.origin
        # The key is built in the customer column (a sorted copy, or an ordered table's own, handed over too),
        # not beside it.
        key = customer.astype(np.int64, copy=False)
        key *= self.span
        key += seconds
        del seconds
        self.key = key

    def first_at_or_after(self, customers: np.ndarray, bound_ns: int) -> np.ndarray:
        """For each customer, the position of its first event at or after `bound_ns` (its run's end if none)."""
        offset = min(max(bound_ns // SECOND_NS - self.origin, 0), self.span - 1)
        return np.searchsorted(self.key, customers * self.span + offset, side="left")

    def window_sums(self, name: str, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Each run [lo, hi)'s sum of column `name`, added in the events' order (0 for an empty run)."""
        bounds = np.empty(2 * len(lo), dtype=np.int64)
        bounds[0::2], bounds[1::2] = lo, hi
        values = self.values[name]
        # Whole numbers (event_tables.summable_values) in int64: exact, so the same bits as float64 sums.
        sums = np.add.reduceat(values, bounds, dtype=np.int64 if values.dtype.kind in "iu" else np.float64)[0::2]
        return np.where(hi > lo, sums, 0.0)


def features_as_of(customers: pd.DataFrame, joined: np.ndarray | None,
                   tables: Mapping[str, EventTable | Callable[[], EventTable]], cutoffs: list[pd.Timestamp],
                   features: FeaturesParams, with_label: bool) -> pd.DataFrame:
    """The rows of every (cutoff, customer joined before it), cutoff by cutoff in the customers' order.

    `customers`: the customers table (ID and static attributes; its join column is `joined`, ns since 1970,
    or None: every customer at every cutoff); `tables`: their events by table name, `customer` being a
    position in `customers`, or a function that reads them: tables are read, sorted and aggregated one at
    a time, in the mapping's order, so only one table's events are in memory at once (the largest first is
    the least memory: no other table's columns are out yet beside its events). The columns come out in
    features.tables' order whatever the order of work."""
    static = customers.drop(columns=[c for c in (features.joined_column,) if c in customers.columns])
    static = static.reset_index(drop=True)
    everyone = np.arange(len(customers))
    cuts = [int(pd.Timestamp(cutoff).value) for cutoff in cutoffs]
    rows = [everyone if joined is None else np.flatnonzero(joined < cut) for cut in cuts]
    bounds = np.cumsum([0, *(len(chosen) for chosen in rows)])

    def put(columns: dict[str, np.ndarray], column: str, snapshot: int, values: np.ndarray) -> None:
        # Each column is allocated once at its full length and filled snapshot by snapshot: no pieces to join
        # (held twice while joined), and an array that large goes back to the system when it is freed.
        if column not in columns:
            columns[column] = np.empty(bounds[-1], dtype=values.dtype)
        columns[column][bounds[snapshot]:bounds[snapshot + 1]] = values

    tenure: dict[str, np.ndarray] = {}
    if joined is not None:
        for snapshot, (cut, chosen) in enumerate(zip(cuts, rows)):
            put(tenure, "tenure_days", snapshot, (cut - joined[chosen]) / DAY_NS)
    label = np.zeros(bounds[-1], dtype=np.int8) if with_label else None
    by_table: dict[str, dict[str, np.ndarray]] = {}
    for name, table in tables.items():
        events = SortedEvents(table() if callable(table) else table, len(customers))
        own = by_table.setdefault(name, {})
        for snapshot, (cut, chosen) in enumerate(zip(cuts, rows)):
            for column, values in _table_features(name, events, chosen, cut, features).items():
                put(own, column, snapshot, values)
            if label is not None and name == features.label_table:
                start = events.first_at_or_after(chosen, cut)
                end = events.first_at_or_after(chosen, cut + features.label_window_days * DAY_NS)
                label[bounds[snapshot]:bounds[snapshot + 1]] = end > start
        del events
    frame = static.take(np.concatenate(rows)).reset_index(drop=True)
    dates = np.array([f"{pd.Timestamp(cutoff):%Y-%m-%d}" for cutoff in cutoffs], dtype=object)
    frame.insert(1, features.snapshot_column, np.repeat(dates, [len(chosen) for chosen in rows]))
    # In features.tables' order, column by column, each array freed once in the frame: held once, not twice.
    for columns in [tenure, *(by_table[name] for name in features.tables if name in by_table)]:
        for column in list(columns):
            frame[column] = columns.pop(column)
    if label is not None:
        frame[features.label_column] = label
    return frame


def _table_features(name: str, events: SortedEvents, rows: np.ndarray, cut: int,
                    features: FeaturesParams) -> dict[str, np.ndarray]:
    spec = features.tables[name]
    end = events.first_at_or_after(rows, cut)
    columns: dict[str, np.ndarray] = {}
    for days in features.windows:
        start = events.first_at_or_after(rows, cut - days * DAY_NS)
        count = end - start
        columns[f"{name}_count_{days}d"] = count.astype(np.int64)
        for column in spec.sums:
            columns[f"{name}_{column}_sum_{days}d"] = events.window_sums(column, start, end)
        for column in spec.means:
            total = events.window_sums(column, start, end)
            with np.errstate(invalid="ignore", divide="ignore"):
                columns[f"{name}_{column}_mean_{days}d"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    seen = end > events.starts[rows]
    last = events.time[np.maximum(end - 1, 0)] if len(events.time) else np.zeros(len(rows), dtype=np.int64)
    columns[f"days_since_last_{name}"] = np.where(seen, (cut - last) / DAY_NS, np.nan)
    columns[f"no_{name}_yet"] = (~seen).astype(np.int8)
    return columns
