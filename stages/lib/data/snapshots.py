"""The dated default: monthly snapshots of the same customers, whose behaviour evolves, with new ones joining.

A team that predicts purchases exports its customers again every month: one row
per customer per snapshot date, the columns as of that date, and the label "bought
in the following month". This generates such an export (generate.snapshots
months, about generate.rows rows in all), from the same behaviour and truth as
the single export (stages.lib.data.behaviour):

- each month every customer who has joined gets a row; JOIN_RATE x the first
  month's customers join every month after it (tenure 0 when they join);
- the hidden traits evolve: engagement and loyalty slowly (and engagement drifts
  down across the population), intent mostly afresh each month; the device mix
  moves towards mobile;
- what drives a purchase drifts (`purchase_logit`'s drift): email traffic counts
  for less as the months pass, a mobile checkout for more, so a model learned on
  the past months meets a slightly different present: an out-of-time test is
  harder than a random one;
- a purchase a customer made in an earlier month shows in their orders_12m,
  spend_12m and days_since_last_order from the next snapshot on.

Each month's intercept keeps its purchase rate at generate.purchase_rate. The true
probability of every row (customer, snapshot date) goes to the separate table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.exact import round_significant_bits
from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.behaviour import (
    DEVICES,
    ID_COLUMN,
    PROBABILITY_COLUMN,
    SNAPSHOT_COLUMN,
    TARGET_COLUMN,
    behaviour,
    demographics,
    exported,
    intercept_for_rate,
    purchase_logit,
    sigmoid,
    traits,
)

JOIN_RATE = 0.05
FIRST_SNAPSHOT = "2025-01-31"   # month ends from here: fixed, so the table is the same whenever it is made
MOBILE_SHIFT = 0.02             # of the device mix, moved from desktop to mobile each month
ENGAGEMENT_DRIFT = -0.03        # the population's mean engagement, each month


def _devices(month: int) -> dict[str, float]:
    shift = min(MOBILE_SHIFT * month, DEVICES["desktop"] - 0.05)
    return {**DEVICES, "mobile": DEVICES["mobile"] + shift, "desktop": DEVICES["desktop"] - shift}


def cohorts(rows: int, months: int) -> tuple[int, int]:
    """(the first month's customers, those joining every month after it) for about `rows` customer x month
    rows over `months` monthly snapshots."""
    first = max(1, round(rows / (months + JOIN_RATE * months * (months - 1) / 2)))
    return first, round(first * JOIN_RATE)


def generate_snapshots(params: GenerateParams, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (customers, true probabilities): one row per customer per month, keyed by customer_id and
    snapshot_date (ISO dates)."""
    months = params.snapshots
    first, joiners = cohorts(params.rows, months)
    customers = first + joiners * (months - 1)
    rng = np.random.default_rng(seed)
    engagement, loyalty, intent = traits(rng, customers)
    static = demographics(rng, customers, loyalty)
    joined = np.concatenate([np.zeros(first, dtype=int), np.repeat(np.arange(1, months), joiners)])
    static["tenure_months"] = np.where(joined > 0, 0.0, static["tenure_months"])
    customer_id = rng.permutation(customers) + 100_001
    dates = pd.date_range(FIRST_SNAPSHOT, periods=months, freq="ME").strftime("%Y-%m-%d")
    bought_in = np.full(customers, -1)          # the last month each customer bought in (-1: none yet)
    bought_count = np.zeros((months, customers), dtype=np.int64)
    frames, truths = [], []
    for month in range(months):
        if month:
            engagement = 0.85 * engagement + np.sqrt(1 - 0.85 ** 2) * rng.normal(size=customers) + ENGAGEMENT_DRIFT
            loyalty = 0.95 * loyalty + np.sqrt(1 - 0.95 ** 2) * rng.normal(size=customers)
            intent = 0.3 * intent + 0.4 * engagement + 0.3 * loyalty + 0.9 * rng.normal(size=customers)
        rows = np.flatnonzero(joined <= month)
        n = len(rows)
        now = {key: values[rows] for key, values in static.items()}
        now["tenure_months"] = now["tenure_months"] + (month - joined[rows])
        c = behaviour(rng, n, engagement[rows], loyalty[rows], intent[rows], now["income_idx"], now["gender"],
                      _devices(month))
        _add_history(c, bought_count[max(0, month - 11):month, rows].sum(axis=0), bought_in[rows], month, rng)
        logit = purchase_logit(params.truth, c, intent[rows], now["age"], now["income_idx"], now["tenure_months"],
                               drift=month / (months - 1))
        probability = sigmoid(logit + intercept_for_rate(logit, params.purchase_rate))
        purchased = (rng.random(n) < probability).astype(np.int8)
        bought_count[month, rows] = purchased
        bought_in[rows[purchased == 1]] = month
        keys = {ID_COLUMN: customer_id[rows], SNAPSHOT_COLUMN: dates[month]}
        frames.append(exported(rng, keys, now, c).assign(**{TARGET_COLUMN: purchased}))
        # Rounded: np.exp differs in the last bit between CPUs (SVML on AVX-512, glibc elsewhere).
        truths.append(pd.DataFrame({**keys, PROBABILITY_COLUMN: round_significant_bits(probability)}))
    return pd.concat(frames, ignore_index=True), pd.concat(truths, ignore_index=True)


def _add_history(c: dict[str, np.ndarray], recent: np.ndarray, last: np.ndarray, month: int,
                 rng: np.random.Generator) -> None:
    """The purchases the export itself saw (in the last 11 months before this one) added to each customer's
    history: orders and spend, and the days since the last order."""
    c["orders_12m"] = c["orders_12m"] + recent
    c["spend_12m"] = (c["spend_12m"] + recent * c["avg_order_value"]).round(2)
    since = np.where(last >= 0, 30 * (month - last) - rng.integers(0, 30, len(last)), np.nan)
    c["days_since_last_order"] = np.where(np.isnan(c["days_since_last_order"]) | (since < c["days_since_last_order"]),
                                          since, c["days_since_last_order"])
