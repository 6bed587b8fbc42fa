"""The embedded default of the "features from events" pipeline: a customers table and its event tables.

Where stages.lib.data.snapshots writes the monthly export a team builds, this
writes what such an export is built from: one row per customer (`customers`:
customer_id, joined_on and demographics) and their timestamped events,
`orders` (customer_id, ordered_at, amount) and website `sessions` (customer_id,
started_at, pages, minutes, basket_adds, saw_checkout), with the true
probability of every label (customer, snapshot) in a separate table.

The calendar: snapshot k's cutoff is the k-th month end from
snapshots.FIRST_SNAPSHOT, at 00:00 (generate.snapshots of them). The label at
cutoff c is "at least one order in [c, c + label_window_days days)". The
simulation starts HISTORY_MONTHS month ends before the first cutoff (so a
365-day window is filled for an old customer) and runs to the month end after
the last cutoff (its label period), one period [c_m, c_m+1) between
consecutive month ends at a time.

- Customers: a first cohort that joined before the first cutoff (on the first
  cutoff less demographics' tenure, in 30-day months, less 1 to 30 days: many
  within the history, with less of it), and JOIN_RATE x the first cohort
  joining on a random day of every month between the snapshots, as snapshots.py
  does; generate.rows is about the sum over the snapshots of the customers
  joined strictly before the cutoff. A customer has no event before joined_on.
- Hidden traits (behaviour.traits) evolve monthly, as in snapshots.py:
  engagement and loyalty slowly (engagement drifting down across the population
  from the first snapshot on), intent mostly afresh.
- Sessions: throughout every period, at uniformly random seconds, Poisson per
  customer with a rate from engagement and the intent at the period's end
  (browsing before buying); pages, minutes, basket adds and checkout views of a
  session follow the intent.
- Orders: only inside the label window [c_m, c_m + L) of every monthly cutoff
  c_m, history cutoffs included: a customer joined before c_m buys there with
  probability sigmoid(logit + intercept), 1 to 3 orders, the first at a
  uniformly random second of the window. The intercept is solved per cutoff so
  the cutoff's purchase rate is generate.purchase_rate; at a snapshot cutoff
  that probability (rounded) is the truth row of (customer, snapshot).
- The logit reads what the events strictly before c_m show, aggregated as the
  features stage does ([c - N days, c) windows): `nonlinear` (the default):
  saturating, thresholded and interacting effects of the last week's and
  month's sessions, basket adds and checkout views, the days since the last
  session and order, the orders and spend of the last 365 days, tenure, age and
  income, plus the hidden intent (moderate weight); `linear`: log-odds linear
  in seven window counts (sessions, basket adds and checkout views over 7 and
  30 days, orders over 365 days) without hidden intent, so a logistic
  regression on those features is the ideal scorer. Both drift over the
  snapshots: checkout views count for more, past orders for less.

Deterministic on every CPU: one numpy Generator, and every value written that
went through exp or log rounded (probabilities to 24 significant bits, amounts
to cents, minutes to tenths). Vectorised per period, the events kept packed
(17 bytes a session) until the tables are built: a million customers with
fifty million sessions take about half a minute and 3 GB.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.errors import ParamsError
from stages.lib.core.exact import round_significant_bits
from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.behaviour import (
    ID_COLUMN,
    PROBABILITY_COLUMN,
    SNAPSHOT_COLUMN,
    demographics,
    intercept_for_rate,
    sigmoid,
    traits,
    with_missing,
)
from stages.lib.data.event_history import DAY, History, timestamps
from stages.lib.data.snapshots import ENGAGEMENT_DRIFT, FIRST_SNAPSHOT, cohorts

EVENT_TABLES = ("orders", "sessions")
CUSTOMERS_TABLE = "customers"
HISTORY_MONTHS = 12        # month ends simulated before the first snapshot's cutoff
MAX_LABEL_WINDOW_DAYS = 28  # the shortest month: a label window never reaches the next cutoff


def event_cutoffs(snapshots: int) -> pd.DatetimeIndex:
    """The simulated month ends: HISTORY_MONTHS before the first snapshot, the `snapshots` cutoffs, and the
    end of the last label period."""
    start = pd.Timestamp(FIRST_SNAPSHOT) - pd.offsets.MonthEnd(HISTORY_MONTHS)
    return pd.date_range(start, periods=HISTORY_MONTHS + snapshots + 1, freq="ME")


def generate_events(params: GenerateParams, label_window_days: int,
                    seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Return ({"customers": ..., "orders": ..., "sessions": ...}, truth): the truth has one row per customer
    joined strictly before a snapshot's cutoff, keyed by customer_id and snapshot_date (ISO text), with the
    true probability of an order in [cutoff, cutoff + label_window_days days)."""
    if not 1 <= label_window_days <= MAX_LABEL_WINDOW_DAYS:
        raise ParamsError(f"params.yaml: features.label_window_days is {label_window_days}; the generated events "
                          f"allow 1 to {MAX_LABEL_WINDOW_DAYS} (their snapshots are month ends, "
                          f"{MAX_LABEL_WINDOW_DAYS} days apart in February): lower it, or give event tables of your "
                          "own in data.events")
    months = params.snapshots
    first, joiners = cohorts(params.rows, months)
    n = first + joiners * (months - 1)
    rng = np.random.default_rng(seed)
    engagement, loyalty, intent = traits(rng, n)
    static = demographics(rng, n, loyalty)
    cutoff_dates = event_cutoffs(months)
    cutoffs = cutoff_dates.as_unit("s").asi8          # seconds since the epoch
    first_day = cutoffs[HISTORY_MONTHS] // DAY
    joined_day = np.concatenate([
        first_day - 30 * static["tenure_months"][:first].astype(np.int64) - rng.integers(1, 31, first),
        *(cutoffs[HISTORY_MONTHS + month - 1] // DAY
          + rng.integers(0, (cutoffs[HISTORY_MONTHS + month] - cutoffs[HISTORY_MONTHS + month - 1]) // DAY, joiners)
          for month in range(1, months)),
    ])
    joined = joined_day * DAY
    customer_id = rng.permutation(n) + 100_001
    history = History(n, cutoffs[0])
    truths = []
    for k in range(len(cutoffs) - 1):
        cutoff = cutoffs[k]
        month = k - HISTORY_MONTHS                   # the snapshot's index (negative: the history)
        eligible = np.flatnonzero(joined < cutoff)
        seen = history.as_of(cutoff, eligible, joined)
        drift = min(max(month, 0) / (months - 1), 1.0) if months > 1 else 0.0
        logit = _purchase_logit(params.truth, seen, intent[eligible], static["age"][eligible],
                                static["income_idx"][eligible], drift)
        probability = round_significant_bits(sigmoid(logit + intercept_for_rate(logit, params.purchase_rate)))
        buyers = eligible[rng.random(len(eligible)) < probability]
        history.add_orders(rng, buyers, cutoff, label_window_days,
                           static["income_idx"][buyers], loyalty[buyers])
        if month >= 0:
            truths.append(pd.DataFrame({ID_COLUMN: customer_id[eligible],
                                        SNAPSHOT_COLUMN: cutoff_dates[k].strftime("%Y-%m-%d"),
                                        PROBABILITY_COLUMN: probability}))
        # The traits at the next cutoff drive this period's sessions: customers browse before they buy.
        engagement = 0.85 * engagement + np.sqrt(1 - 0.85 ** 2) * rng.normal(size=n) \
            + (ENGAGEMENT_DRIFT if month >= 0 else 0.0)
        loyalty = 0.95 * loyalty + np.sqrt(1 - 0.95 ** 2) * rng.normal(size=n)
        intent = 0.3 * intent + 0.4 * engagement + 0.3 * loyalty + 0.9 * rng.normal(size=n)
        history.add_sessions(rng, cutoff, cutoffs[k + 1], joined, engagement, intent)

    customers = pd.DataFrame({
        ID_COLUMN: customer_id,
        "joined_on": timestamps(joined),
        "age": with_missing(rng, static["age"], 0.03),
        "gender": with_missing(rng, static["gender"], 0.05),
        "region": static["region"],
        "income_band": with_missing(rng, static["income_band"], 0.12),
        "household_size": static["household_size"].astype(np.int64),
    })
    tables = {CUSTOMERS_TABLE: customers, **history.tables(customer_id)}
    return tables, pd.concat(truths, ignore_index=True)


def labels_of(orders: pd.DataFrame, truth: pd.DataFrame, label_window_days: int) -> np.ndarray:
    """Each truth row's label (int8): 1 when its customer has an order in [cutoff, cutoff + label_window_days
    days) of its snapshot date."""
    labels = np.zeros(len(truth), dtype=np.int8)
    dates = truth[SNAPSHOT_COLUMN].to_numpy()
    for date in pd.unique(dates):
        cutoff = pd.Timestamp(date)
        ordered_at = orders["ordered_at"]
        in_window = (ordered_at >= cutoff) & (ordered_at < cutoff + pd.Timedelta(days=label_window_days))
        rows = dates == date
        labels[rows] = np.isin(truth[ID_COLUMN].to_numpy()[rows], orders.loc[in_window, ID_COLUMN].to_numpy())
    return labels


def _purchase_logit(truth: str, seen: dict[str, np.ndarray], intent: np.ndarray, age: np.ndarray,
                    income_idx: np.ndarray, drift: float) -> np.ndarray:
    """The log-odds of an order in the label window, before the intercept, from what the events before the
    cutoff show (`seen`) and, for the nonlinear truth, the hidden intent; `drift` (0 to 1 over the snapshots)
    moves weight from past orders to checkout views."""
    checkouts = seen["saw_checkout_30d"]
    if truth == "linear":
        logit = (
            0.10 * seen["sessions_30d"] + 0.15 * seen["sessions_7d"]
            + 0.20 * seen["basket_adds_30d"] + 0.15 * seen["basket_adds_7d"]
            + 0.45 * checkouts + 0.30 * seen["saw_checkout_7d"]
            + 0.25 * seen["orders_365d"]
        )
        return logit + drift * (0.3 * checkouts - 0.1 * seen["orders_365d"])
    since_order = np.nan_to_num(seen["days_since_last_order"], nan=400.0)
    since_visit = np.nan_to_num(seen["days_since_last_session"], nan=400.0)
    orders = seen["orders_365d"]
    logit = (
        0.8 * np.log1p(seen["basket_adds_30d"])
        + 0.5 * np.log1p(seen["basket_adds_7d"])
        + 0.7 * np.minimum(checkouts, 2) * (1.0 + 0.5 * (income_idx >= 3))   # checkouts move high incomes more
        + 0.5 * np.tanh((seen["sessions_30d"] - 3) / 2)
        + 0.35 * np.tanh((seen["minutes_30d"] - 30) / 30)
        + 0.6 * np.exp(-since_visit / 4)                # browsing right now
        - 0.8 * np.exp(-since_order / 10)               # just bought: unlikely to buy again at once
        + 0.5 * np.exp(-since_order / 75)               # recent customers come back
        + 0.35 * np.log1p(orders)
        + 0.3 * np.tanh(seen["spend_365d"] / 300) * (seen["tenure_days"] > 730)   # loyal big spenders
        + 0.5 * np.exp(-seen["tenure_days"] / 45)       # a new customer's first weeks
        - 0.004 * (age - 38) ** 2 / 10
        + 0.2 * (income_idx >= 3) * (orders > 0)
        + 0.6 * intent                                  # never observed directly
    )
    return logit + drift * (0.4 * np.minimum(checkouts, 2) - 0.2 * np.log1p(orders))
