"""What the generated customers do, drawn from hidden traits: the behaviour every export shows, and the truth.

Shared by the single export (stages.lib.data.synthetic) and the monthly snapshots
(stages.lib.data.snapshots): the same columns, drawn the same way, from the same
hidden traits (engagement, loyalty, intent), and the same true log-odds of buying.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The export's key, label and truth columns.
ID_COLUMN = "customer_id"
SNAPSHOT_COLUMN = "snapshot_date"   # the dated export's (generate.snapshots above 1)
TARGET_COLUMN = "purchased"
PROBABILITY_COLUMN = "true_probability"

REGIONS = {
    "London": 0.16, "South East": 0.14, "North West": 0.12, "East": 0.10, "West Midlands": 0.09,
    "South West": 0.09, "Yorkshire": 0.09, "Scotland": 0.08, "East Midlands": 0.07, "Wales": 0.04,
    "Northern Ireland": 0.015, "Channel Islands": 0.004, "Isle of Man": 0.001,
}
DEVICES = {"mobile": 0.58, "desktop": 0.33, "tablet": 0.085, "smart_tv": 0.005}
TRAFFIC_SOURCES = {
    "organic": 0.30, "paid_search": 0.22, "direct": 0.17, "email": 0.12, "social": 0.12,
    "affiliate": 0.05, "referral": 0.018, "partner_app": 0.002,
}
GENDERS = {"F": 0.50, "M": 0.47, "X": 0.03}
INCOME_BANDS = ["<20k", "20-40k", "40-60k", "60-100k", "100k+"]


def choice(rng: np.random.Generator, levels: dict[str, float], n: int) -> np.ndarray:
    names = np.array(list(levels), dtype=object)
    probs = np.array(list(levels.values()))
    return names[rng.choice(len(names), size=n, p=probs / probs.sum())]


def with_missing(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
    values = values.astype(object if values.dtype == object else float)
    values[rng.random(len(values)) < rate] = None if values.dtype == object else np.nan
    return values


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def intercept_for_rate(logit: np.ndarray, rate: float) -> float:
    """The shift b for which mean(sigmoid(logit + b)) equals `rate` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        if sigmoid(logit + mid).mean() < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def traits(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hidden traits, correlated with each other; none is exported: engagement, loyalty, intent."""
    engagement = rng.normal(size=n)
    loyalty = 0.5 * engagement + np.sqrt(1 - 0.25) * rng.normal(size=n)
    intent = 0.4 * engagement + 0.3 * loyalty + rng.normal(size=n)
    return engagement, loyalty, intent


def demographics(rng: np.random.Generator, n: int, loyalty: np.ndarray) -> dict[str, np.ndarray]:
    """Who the customers are: age, gender, region, income (and its band's index), tenure, household."""
    age = np.clip(rng.normal(42, 14, n), 18, 90).round()
    gender = choice(rng, GENDERS, n)
    region = choice(rng, REGIONS, n)
    income_idx = np.clip(np.round(1.8 + 0.03 * (age - 42) + rng.normal(0, 1.1, n)), 0, 4).astype(int)
    income_band = np.array(INCOME_BANDS, dtype=object)[income_idx]
    tenure_months = np.minimum(rng.exponential(30 + 20 * (loyalty + 2).clip(0), n), 240).round()
    household_size = np.clip(rng.poisson(1.6, n) + 1, 1, 8)
    return {"age": age, "gender": gender, "region": region, "income_idx": income_idx, "income_band": income_band,
            "tenure_months": tenure_months, "household_size": household_size}


def behaviour(rng: np.random.Generator, n: int, engagement: np.ndarray, loyalty: np.ndarray, intent: np.ndarray,
              income_idx: np.ndarray, gender: np.ndarray, devices: dict[str, float] = DEVICES) -> dict[str, np.ndarray]:
    """A month of website behaviour and a year of purchase history, drawn from the hidden traits."""
    # Website behaviour over the last 30 days.
    device = choice(rng, devices, n)
    traffic_source = choice(rng, TRAFFIC_SOURCES, n)
    sessions_30d = rng.poisson(np.exp(0.9 + 0.6 * engagement + 0.25 * intent))
    active = sessions_30d > 0
    pages_per_session = np.where(active, np.exp(1.3 + 0.25 * intent + rng.normal(0, 0.45, n)), np.nan).round(2)
    minutes_per_page = np.exp(-0.1 + 0.15 * engagement + rng.normal(0, 0.5, n))
    minutes_on_site = (np.nan_to_num(pages_per_session) * sessions_30d * minutes_per_page).round(1)
    basket_adds_30d = rng.poisson(active * np.exp(-0.9 + 0.55 * intent + 0.2 * engagement))
    wishlist_adds_30d = rng.poisson(active * np.exp(-1.2 + 0.4 * engagement + 0.2 * intent))
    checkout_logit = -2.3 + 1.1 * np.log1p(basket_adds_30d) + 0.7 * intent
    saw_checkout = (rng.random(n) < sigmoid(checkout_logit) * active).astype(np.int8)
    checked_delivery_details = (saw_checkout & (rng.random(n) < sigmoid(-0.6 + 0.9 * intent))).astype(np.int8)
    promo_clicks_30d = rng.poisson(active * np.exp(-1.0 + 0.35 * engagement + 0.5 * (traffic_source == "email")))
    days_since_last_visit = np.where(active, rng.integers(0, 30, n), 30 + rng.exponential(60, n).round())
    email_open_rate = sigmoid(-0.8 + 0.6 * engagement + rng.normal(0, 0.6, n)).round(3)

    # Purchase history over the last 12 months.
    orders_12m = rng.poisson(np.exp(-0.2 + 0.8 * loyalty + 0.2 * engagement))
    has_ordered = orders_12m > 0
    days_since_last_order = np.where(
        has_ordered, np.minimum(rng.exponential(365 / (orders_12m + 1.5), n), 365).round(), np.nan
    )
    avg_order_value = np.exp(3.6 + 0.25 * income_idx + rng.normal(0, 0.5, n))
    spend_12m = (orders_12m * avg_order_value).round(2)
    returns_12m = rng.binomial(orders_12m, np.clip(0.12 + 0.05 * (gender == "F") + rng.normal(0, 0.05, n), 0, 1))
    loyalty_member = (rng.random(n) < sigmoid(-1.0 + 1.2 * loyalty)).astype(np.int8)
    newsletter_subscriber = (rng.random(n) < sigmoid(-0.5 + 0.5 * engagement)).astype(np.int8)

    return {
        "device": device,
        "traffic_source": traffic_source,
        "sessions_30d": sessions_30d,
        "pages_per_session": pages_per_session,
        "minutes_on_site": minutes_on_site,
        "basket_adds_30d": basket_adds_30d,
        "wishlist_adds_30d": wishlist_adds_30d,
        "saw_checkout": saw_checkout,
        "checked_delivery_details": checked_delivery_details,
        "promo_clicks_30d": promo_clicks_30d,
        "days_since_last_visit": days_since_last_visit,
        "email_open_rate": email_open_rate,
        "orders_12m": orders_12m,
        "days_since_last_order": days_since_last_order,
        "avg_order_value": avg_order_value,
        "spend_12m": spend_12m,
        "returns_12m": returns_12m,
        "loyalty_member": loyalty_member,
        "newsletter_subscriber": newsletter_subscriber,
    }


def purchase_logit(truth: str, c: dict[str, np.ndarray], intent: np.ndarray, age: np.ndarray,
                   income_idx: np.ndarray, tenure_months: np.ndarray, drift: float = 0.0) -> np.ndarray:
    """The log-odds of buying, before the intercept that sets the purchase rate: `linear` in seven exported
    columns, or the default `nonlinear` truth; `drift` (0 to 1, a dated table's months) slowly moves what
    matters: email traffic counts for less, the mobile checkout for more."""
    if truth == "linear":
        # Log-odds linear in a few complete, exported columns: a logistic regression on them is the ideal scorer.
        logit = (
            0.30 * c["basket_adds_30d"]
            + 1.2 * c["checked_delivery_details"]
            + 0.8 * c["saw_checkout"]
            + 0.20 * c["orders_12m"]
            + 0.5 * c["loyalty_member"]
            + 0.15 * c["promo_clicks_30d"]
            - 0.02 * c["days_since_last_visit"]
        )
    else:
        # The default truth: saturating, thresholded and interacting effects, and intent never exported.
        recency = np.nan_to_num(c["days_since_last_order"], nan=400.0)
        return_ratio = np.where(c["orders_12m"] > 0, c["returns_12m"] / np.maximum(c["orders_12m"], 1), 0.0)
        logit = (
            0.8 * np.log1p(c["basket_adds_30d"])
            + 0.9 * c["checked_delivery_details"] * (1.0 + 0.6 * (c["device"] == "desktop")
                                                     - 0.4 * (c["device"] == "mobile"))
            + 0.4 * c["saw_checkout"]
            + 0.55 * np.tanh((c["minutes_on_site"] - 25) / 20)
            - 0.6 * np.exp(-recency / 4)              # just bought: unlikely to buy again at once
            + 0.5 * np.exp(-recency / 60)             # recent customers come back
            + 0.35 * np.log1p(c["orders_12m"])
            - 1.2 * np.maximum(return_ratio - 0.3, 0)  # serial returners stop buying
            + 0.25 * np.minimum(c["promo_clicks_30d"], 4) * (income_idx <= 1)   # promos move low incomes
            - 0.004 * (age - 38) ** 2 / 10
            + 0.3 * (c["traffic_source"] == "email") - 0.25 * (c["traffic_source"] == "social")
            + 0.25 * c["loyalty_member"] * (tenure_months > 24)
            + 0.7 * intent                             # never observed directly
        )
    if drift:
        logit = logit - 0.3 * drift * (c["traffic_source"] == "email") \
            + 0.5 * drift * c["checked_delivery_details"] * (c["device"] == "mobile")
    return logit


def exported(rng: np.random.Generator, ids: dict[str, object], static: dict[str, np.ndarray],
             c: dict[str, np.ndarray]) -> pd.DataFrame:
    """The export's columns, in its order, with the gaps a real export has (`ids` first)."""
    return pd.DataFrame({
        **ids,
        "age": with_missing(rng, static["age"], 0.03),
        "gender": with_missing(rng, static["gender"], 0.05),
        "region": static["region"],
        "income_band": with_missing(rng, static["income_band"], 0.12),
        "tenure_months": static["tenure_months"],
        "household_size": static["household_size"],
        "device": c["device"],
        "traffic_source": with_missing(rng, c["traffic_source"], 0.02),
        **{name: c[name] for name in ("sessions_30d", "pages_per_session", "minutes_on_site", "basket_adds_30d",
                                       "wishlist_adds_30d", "saw_checkout", "checked_delivery_details",
                                       "promo_clicks_30d", "days_since_last_visit")},
        "email_open_rate": with_missing(rng, c["email_open_rate"], 0.15),
        **{name: c[name] for name in ("orders_12m", "days_since_last_order", "spend_12m", "returns_12m",
                                       "loyalty_member", "newsletter_subscriber")},
    })
