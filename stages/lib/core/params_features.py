"""The `features` section of params.yaml: the customer x snapshot table built from event tables (pydantic models).

Which aggregations of which event columns over which windows is declared here, in
params.yaml, never in code: stages.lib.features reads these and nothing else.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal, Optional, Union

import pandas as pd
from pydantic import BeforeValidator, field_validator

from stages.lib.core.params_types import Section, Text, empty_is_none
from stages.lib.core.params_types import doc as _doc

SNAPSHOT_STEPS = ("month", "week")


def _iso_date(value: object) -> object:
    """A date written in YAML (2025-01-31 reads as a date) or as text, kept as ISO text."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date such as 2025-01-31") from None
    return value


IsoDate = Annotated[Text, BeforeValidator(_iso_date)]


def _step(every: str, count: int) -> pd.DateOffset | pd.Timedelta:
    return pd.DateOffset(months=count) if every == "month" else pd.Timedelta(weeks=count)


class EventTableParams(Section):
    """One event table in data.events: its time column and what is aggregated over each window."""

    timestamp: Text = _doc("The event's time (ISO dates or timestamps). Only events strictly before a snapshot's "
                           "cutoff (its date at 00:00) reach that snapshot's features.")
    sums: list[Text] = _doc("Numeric columns summed over each window (`<table>_<column>_sum_<N>d`; 0 without "
                            "events).", default=[])
    means: list[Text] = _doc("Numeric columns averaged over each window (`<table>_<column>_mean_<N>d`; missing "
                             "without events, the window's count says so).", default=[])


class SnapshotRange(Section):
    """Snapshot dates from `first` to `last`, one `every` month (the same day of the month, or the month's
    last day when it has fewer) or week."""

    first: IsoDate = _doc("The first snapshot date.")
    last: IsoDate = _doc("The last snapshot date (included when the steps land on it).")
    every: Literal[SNAPSHOT_STEPS] = _doc("`month` or `week`.", default="month")


class FeaturesParams(Section):
    """The `features` stage: one row per customer per snapshot date, built from data.events as of each date
    (docs/own-data.md, "Event tables")."""

    id_column: Text = _doc("The customer ID, in the customers table and every event table; the output's ID "
                           "column.", default="customer_id")
    customers: Text = _doc("The customers table's name in data.events (`customers.csv`, `customers.parquet` or "
                           "a directory `customers/` of parquet files): one row per customer, its static "
                           "attributes (every other column, taken as they are) and the date it joined.",
                           default="customers")
    joined_column: Annotated[Optional[Text], BeforeValidator(empty_is_none)] = _doc(
        "The customers table's join date: a customer has a row at every snapshot after it (and `tenure_days`). "
        "Empty: every customer at every snapshot, no tenure.", default="joined_on")
    tables: dict[Text, EventTableParams] = _doc(
        "The event tables in data.events, by name (`orders` reads `orders.csv`, `orders.parquet` or `orders/`). "
        "For each, per window of features.windows: `<table>_count_<N>d` and the declared sums and means; and "
        "`days_since_last_<table>` (missing with `no_<table>_yet` = 1 before the first event).",
        default={"orders": EventTableParams(timestamp="ordered_at", sums=["amount"]),
                 "sessions": EventTableParams(timestamp="started_at",
                                              sums=["pages", "minutes", "basket_adds", "saw_checkout"])})
    snapshots: Union[list[IsoDate], SnapshotRange] = _doc(
        "The snapshot dates: a list of ISO dates, or `{first: DATE, last: DATE, every: month | week}`.",
        default=SnapshotRange(first="2025-01-31", last="2025-06-30", every="month"))
    windows: list[int] = _doc("Feature windows in days: an event counts in window N of a snapshot when it lies "
                              "in [cutoff - N days, cutoff).", default=[7, 30, 90, 365])
    label_table: Text = _doc("The event table whose events are purchases.", default="orders")
    label_window_days: int = _doc(
        "The label: a purchase in [cutoff, cutoff + N days). At most the days between consecutive snapshots, so "
        "every row's label is known by the next snapshot and never overlaps a later row's features.",
        default=28, ge=1)
    snapshot_column: Text = _doc("The output's snapshot date column (data.time_column names it).",
                                 default="snapshot_date")
    label_column: Text = _doc("The output's label column, 1 for a purchase (data.target names it).",
                              default="purchased")

    @field_validator("windows")
    @classmethod
    def _windows_positive(cls, windows: list[int]) -> list[int]:
        if not windows or any(w < 1 for w in windows):
            raise ValueError("give one or more windows of at least 1 day")
        if len(set(windows)) != len(windows):
            raise ValueError("a window is listed twice")
        return windows

    def snapshot_dates(self) -> list[pd.Timestamp]:
        """The snapshot dates, ascending: a list as given, or a range's steps from `first` (each step counted
        from `first`, so Jan 31 steps to Feb 28 and then Mar 31). A snapshot's cutoff is its date at 00:00."""
        if not isinstance(self.snapshots, SnapshotRange):
            return sorted(pd.Timestamp(date) for date in self.snapshots)
        first, last = pd.Timestamp(self.snapshots.first), pd.Timestamp(self.snapshots.last)
        dates: list[pd.Timestamp] = []
        while (date := first + _step(self.snapshots.every, len(dates))) <= last:
            dates.append(date)
        return dates

    def problems(self) -> list[str]:
        """What is wrong across keys (the snapshot dates, the label window and table), one line each."""
        dates = self.snapshot_dates()
        if not dates:
            return ["features.snapshots: no snapshot dates (is `last` before `first`?); give at least one date"]
        if len(set(dates)) != len(dates):
            return ["features.snapshots: a date is listed twice; list each snapshot date once"]
        problems = []
        gaps = [(later - earlier).days for earlier, later in zip(dates, dates[1:])]
        if gaps and min(gaps) < self.label_window_days:
            at = gaps.index(min(gaps))
            problems.append(
                f"features.label_window_days ({self.label_window_days}) is longer than the {gaps[at]} days between "
                f"the snapshots {dates[at]:%Y-%m-%d} and {dates[at + 1]:%Y-%m-%d}: a row's label would reach past "
                "the next snapshot's cutoff; shorten the window or space the snapshots further apart")
        if self.label_table not in self.tables:
            problems.append(f"features.label_table '{self.label_table}' is not one of features.tables "
                            f"({', '.join(self.tables)}); name the table whose events are purchases")
        return problems
