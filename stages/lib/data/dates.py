"""Snapshot dates: a dated table's time column read strictly, and which dates train and which test.

A dated table (data.time_column) holds one row per customer per snapshot date.
Its dates are parsed strictly (ISO dates or timestamps; anything else is one
error line naming the row) and carried through the processed splits in the
SNAPSHOT column, which is never a feature. The out-of-time split is by date:
the latest preprocess.test_periods dates are the test split, data.gap_periods
dates before them are left out (labels that arrive late), and every earlier date
trains. Partitions count their rows per date (`period_counts`) and the counts add
up, so either engine, and any cut of the table into files, gives the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError

GOOD_DATES = "ISO dates such as 2026-01-31, or timestamps such as 2026-01-31T12:00:00"

Periods = dict[int, np.ndarray]   # a date (ns since 1970) -> rows of each class [non-buyers, buyers]


def parse_dates(series: pd.Series, column: str, offset: int, source: str, key: str = "data.time_column",
                needs: str = "its snapshot date") -> np.ndarray:
    """A time column's values as datetime64[ns] (time zones converted to UTC); a missing or unparsable
    value is a DataError naming its data row (1: the table's first row) and the param `key` that names the
    column."""
    if pd.api.types.is_datetime64_any_dtype(series) and getattr(series.dtype, "tz", None) is None:
        # Already times without a zone (a parquet timestamp): read as they are, without the copies a
        # conversion to UTC and back makes of a column of tens of millions of events.
        values = series.to_numpy("datetime64[ns]")
        if not np.isnat(values).any():
            return values
        parsed = pd.to_datetime(series, utc=True)
    elif pd.api.types.is_datetime64_any_dtype(series):
        parsed = pd.to_datetime(series, utc=True)
    else:
        parsed = pd.to_datetime(series.astype("string").str.strip(), format="ISO8601", errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        row, value = offset + int(bad[0]) + 1, series.iloc[int(bad[0])]
        found = "is empty" if pd.isna(value) else f"holds {str(value)!r}, not a date,"
        raise DataError(f"{source}: time column '{column}' ({key}) {found} in data row {row:,}"
                        f"{f' (and {len(bad) - 1:,} more rows)' if len(bad) > 1 else ''}; every row needs {needs}: "
                        f"give {GOOD_DATES}")
    return parsed.dt.tz_localize(None).to_numpy("datetime64[ns]")


def date_label(value: int | np.datetime64) -> str:
    """A date as people and JSON keys read it: 2026-01-31, or 2026-01-31T12:00:00 when it has a time of day."""
    stamp = pd.Timestamp(np.datetime64(int(value), "ns") if isinstance(value, (int, np.integer)) else value)
    return stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.isoformat()


def period_counts(dates: np.ndarray, labels: np.ndarray) -> Periods:
    """Rows of each class at each date of a partition."""
    keys = np.asarray(dates, dtype="datetime64[ns]").astype(np.int64)
    return {int(date): np.bincount(labels[keys == date], minlength=2).astype(np.int64) for date in np.unique(keys)}


def added_periods(pieces: list[Periods]) -> Periods:
    added: Periods = {}
    for piece in pieces:
        for date, counts in piece.items():
            added[date] = added[date] + counts if date in added else counts.copy()
    return dict(sorted(added.items()))


@dataclass(frozen=True)
class PeriodSplit:
    """Which snapshot dates (ns since 1970, ascending) train, are left out, and test."""

    train: tuple[int, ...]
    gap: tuple[int, ...]
    test: tuple[int, ...]

    def side(self, dates: np.ndarray) -> np.ndarray:
        """Each row's side: 0 training, 1 test, -1 left out (the gap)."""
        keys = np.asarray(dates, dtype="datetime64[ns]").astype(np.int64)
        return np.where(np.isin(keys, self.test), 1, np.where(np.isin(keys, self.train), 0, -1)).astype(np.int8)

    def summary(self) -> str:
        """The dates on each side, for the stage's output."""
        def span(dates: tuple[int, ...]) -> str:
            if not dates:
                return "none"
            ends = date_label(dates[0]) if len(dates) == 1 else f"{date_label(dates[0])} to {date_label(dates[-1])}"
            return f"{ends} ({len(dates)} date{'s' if len(dates) > 1 else ''})"
        gap = f"; left out (data.gap_periods) {span(self.gap)}" if self.gap else ""
        return f"training {span(self.train)}{gap}; test {span(self.test)}"


def split_periods(periods: Periods, test_periods: int, gap_periods: int, column: str, source: str) -> PeriodSplit:
    """The out-of-time split of a dated table whose rows per date and class are `periods`."""
    dates = sorted(periods)
    found = (f"{len(dates)} snapshot date{'s' if len(dates) != 1 else ''} "
             f"({date_label(dates[0])}{f' to {date_label(dates[-1])}' if len(dates) > 1 else ''})")
    if len(dates) < test_periods + gap_periods + 1:
        raise DataError(f"{source}: time column '{column}' has {found}; preprocess.test_periods={test_periods} "
                        f"and data.gap_periods={gap_periods} leave none to train on: export more snapshots, or "
                        "lower them (or leave data.time_column empty for a random split)")
    test = tuple(dates[len(dates) - test_periods:])
    gap = tuple(dates[len(dates) - test_periods - gap_periods:len(dates) - test_periods])
    train = tuple(dates[:len(dates) - test_periods - gap_periods])
    split = PeriodSplit(train, gap, test)
    for side, name in ((test, "test"), (train, "training")):
        buyers = int(sum(periods[date][1] for date in side))
        rows = int(sum(periods[date].sum() for date in side))
        if buyers < (1 if name == "test" else 2) or buyers == rows:
            raise DataError(f"{source}: the {name} snapshot dates ({split.summary()}) hold {buyers} buyer rows of "
                            f"{rows:,}; both splits need buyers and non-buyers: change preprocess.test_periods or "
                            "export more snapshots")
    return split
