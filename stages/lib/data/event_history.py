"""The event tables simulated so far (stages.lib.data.events), packed, and what the purchase logit reads of them.

Sessions and orders are kept one packed array per period (17 bytes a session)
until the tables are built, so a million customers with fifty million sessions
fit in about 3 GB; `History.as_of` aggregates them as the features stage does
([cutoff - N days, cutoff) windows), for the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.data.behaviour import ID_COLUMN, sigmoid

DAY = 86_400               # seconds
RECENT_DAYS = (7, 30)       # the session windows the logit reads (the last two periods hold them)
YEAR_DAYS = 365
EXTRA_ORDERS = (2, 0.15)    # a buyer's orders in a window: 1 + Binomial(2, 0.15)

def timestamps(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype=np.int64).astype("datetime64[s]").astype("datetime64[ns]")


def _last_per_group(customers: np.ndarray, times: np.ndarray, last: np.ndarray) -> None:
    """Set `last[c]` to the latest of `times` for every customer c in `customers` (grouped, ascending)."""
    if not len(customers):
        return
    starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])
    last[customers[starts]] = np.maximum.reduceat(times, starts)


# A period's events, packed: customers as row numbers, times as seconds from the simulation's start, minutes in
# tenths. One array per period, not one per column: large enough that the allocator maps it apart and gives it
# back to the system once the tables are built.
SESSION_RECORD = np.dtype([("customer", np.int32), ("time", np.int32), ("minutes", np.int32),
                           ("pages", np.int16), ("basket_adds", np.int16), ("saw_checkout", np.int8)])
ORDER_RECORD = np.dtype([("customer", np.int32), ("time", np.int32), ("amount", np.float64)])


class History:
    """The events simulated so far, one packed array per period, and the per-customer aggregates the purchase
    logit reads at a cutoff."""

    def __init__(self, n: int, start: int):
        self.n, self.start = n, start
        self.sessions: list[np.ndarray] = []
        self.orders: list[np.ndarray] = []
        self.last_session = np.full(n, np.nan)
        self.last_order = np.full(n, np.nan)

    def _since(self, periods: list[np.ndarray], cutoff: int, days: int) -> np.ndarray:
        """The events of `periods` (all before the cutoff) in [cutoff - days, cutoff)."""
        events = np.concatenate(periods)
        return events[events["time"] >= cutoff - days * DAY - self.start]

    def as_of(self, cutoff: int, rows: np.ndarray, joined: np.ndarray) -> dict[str, np.ndarray]:
        """What the events strictly before `cutoff` show of the customers `rows`, as the features stage counts
        them: windows [cutoff - N days, cutoff)."""
        seen: dict[str, np.ndarray] = {}
        # A period is at least 28 days: the last two hold the last 30 days.
        sessions = self._since(self.sessions[-2:] or [np.zeros(0, SESSION_RECORD)], cutoff, max(RECENT_DAYS))
        for days in sorted(RECENT_DAYS, reverse=True):
            sessions = sessions[sessions["time"] >= cutoff - days * DAY - self.start]
            seen[f"sessions_{days}d"] = np.bincount(sessions["customer"], minlength=self.n)[rows]
            for column in ("basket_adds", "saw_checkout", "minutes"):
                seen[f"{column}_{days}d"] = np.bincount(sessions["customer"], weights=sessions[column],
                                                        minlength=self.n)[rows]
        seen["minutes_30d"] = seen["minutes_30d"] / 10      # kept in tenths
        del seen["minutes_7d"]
        # Fourteen windows, each at least 28 days after the one before, reach back more than 365 days.
        orders = self._since(self.orders[-14:] or [np.zeros(0, ORDER_RECORD)], cutoff, YEAR_DAYS)
        seen["orders_365d"] = np.bincount(orders["customer"], minlength=self.n)[rows]
        seen["spend_365d"] = np.bincount(orders["customer"], weights=orders["amount"], minlength=self.n)[rows]
        seen["days_since_last_order"] = (cutoff - self.last_order[rows]) / DAY
        seen["days_since_last_session"] = (cutoff - self.last_session[rows]) / DAY
        seen["tenure_days"] = (cutoff - joined[rows]) / DAY
        return seen

    def add_orders(self, rng: np.random.Generator, buyers: np.ndarray, cutoff: int, window_days: int,
                   income_idx: np.ndarray, loyalty: np.ndarray) -> None:
        """The orders of `buyers` (ascending) in [cutoff, cutoff + window_days): the first at a random second,
        any others after it."""
        count = 1 + rng.binomial(*EXTRA_ORDERS, size=len(buyers))
        end = cutoff + window_days * DAY
        first = cutoff + rng.integers(0, window_days * DAY, len(buyers))
        customer = np.repeat(buyers, count)
        first_of = np.repeat(first, count)
        is_first = np.r_[True, customer[1:] != customer[:-1]] if len(customer) else np.zeros(0, bool)
        time = np.where(is_first, first_of, first_of + rng.integers(0, end - first_of))
        typical = np.repeat(3.6 + 0.25 * income_idx + 0.2 * loyalty, count)
        amount = np.maximum(np.exp(typical + rng.normal(0, 0.5, len(customer))).round(2), 0.01)
        _last_per_group(customer, time.astype(float), self.last_order)
        orders = np.empty(len(customer), ORDER_RECORD)
        orders["customer"], orders["time"], orders["amount"] = customer, time - self.start, amount
        self.orders.append(orders)

    def add_sessions(self, rng: np.random.Generator, start: int, end: int, joined: np.ndarray,
                     engagement: np.ndarray, intent: np.ndarray) -> None:
        """The sessions of the period [start, end), of every customer joined before its end, at uniformly random
        seconds from the later of `start` and their join."""
        active = np.flatnonzero(joined < end)
        begin = np.maximum(start, joined[active])
        share = (end - begin) / (end - start)
        count = rng.poisson(np.exp(0.85 + 0.45 * engagement[active] + 0.3 * intent[active]) * share)
        customer = np.repeat(active, count)
        sessions = np.empty(len(customer), SESSION_RECORD)
        sessions["customer"] = customer
        sessions["time"] = np.repeat(begin - self.start, count) + rng.integers(0, np.repeat(end - begin, count))
        _last_per_group(customer, sessions["time"] + float(self.start), self.last_session)
        e, i = engagement[customer], intent[customer]
        del customer
        pages = 1 + rng.poisson(np.exp(0.8 + 0.25 * i + 0.1 * e))
        sessions["pages"] = pages
        sessions["minutes"] = np.rint(pages * np.exp(-0.1 + 0.15 * e + rng.normal(0, 0.5, len(e))) * 10)
        del pages
        basket_adds = rng.poisson(np.exp(-1.5 + 0.5 * i + 0.1 * e))
        sessions["basket_adds"] = basket_adds
        sessions["saw_checkout"] = rng.random(len(e)) < sigmoid(-2.6 + 1.1 * np.log1p(basket_adds) + 0.6 * i)
        self.sessions.append(sessions)

    def tables(self, customer_id: np.ndarray) -> dict[str, pd.DataFrame]:
        """The event tables, filled period by period from the packed arrays, each freed once copied."""
        tables = {}
        for name, periods, time_column, fields in (
            ("orders", self.orders, "ordered_at", {"amount": np.float64}),
            ("sessions", self.sessions, "started_at", {"pages": np.int64, "minutes": np.float64,
                                                       "basket_adds": np.int64, "saw_checkout": np.int8}),
        ):
            size = sum(len(period) for period in periods)
            ids, seconds = np.empty(size, np.int64), np.empty(size, np.int64)
            columns = {field: np.empty(size, dtype) for field, dtype in fields.items()}
            at = 0
            while periods:
                period = periods.pop(0)
                rows = slice(at, at + len(period))
                ids[rows] = customer_id[period["customer"]]
                seconds[rows] = period["time"]
                for field in fields:
                    columns[field][rows] = period[field] / 10 if field == "minutes" else period[field]
                at += len(period)
                del period
            seconds += self.start
            seconds *= 10 ** 9
            tables[name] = pd.DataFrame({ID_COLUMN: ids, time_column: seconds.view("datetime64[ns]"),
                                         **columns}, copy=False)
        return tables


