"""The embedded default dataset: a synthetic e-commerce customer export and its true probabilities.

Every customer gets demographics, website behaviour over the last 30 days and a
12-month purchase history, drawn from a few hidden traits (engagement, loyalty,
intent). Whether they buy is drawn from a true probability: by default with
non-linear effects and interactions, so boosted trees beat a linear model, and
part of the intent never observed, so no column gives the answer away; with
`generate.truth: linear`, from log-odds linear in seven exported columns, the
table where a logistic regression is the ideal scorer. The true
probabilities go to a separate table that only evaluation reads, to measure
how far a model is from the best possible one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.exact import round_significant_bits
from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.behaviour import (
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
from stages.lib.data.snapshots import generate_snapshots


def generate_customers(params: GenerateParams, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (customers, true probabilities), both keyed by customer_id (and, with generate.snapshots above 1,
    snapshot_date: stages.lib.data.snapshots)."""
    if params.snapshots > 1:
        return generate_snapshots(params, seed)
    n = params.rows
    rng = np.random.default_rng(seed)
    engagement, loyalty, intent = traits(rng, n)
    static = demographics(rng, n, loyalty)
    c = behaviour(rng, n, engagement, loyalty, intent, static["income_idx"], static["gender"])
    logit = purchase_logit(params.truth, c, intent, static["age"], static["income_idx"], static["tenure_months"])
    logit = logit + intercept_for_rate(logit, params.purchase_rate)
    probability = sigmoid(logit)
    purchased = (rng.random(n) < probability).astype(np.int8)

    # Customer IDs are unique but not in row order, as in a real export.
    customer_id = rng.permutation(n) + 100_001
    customers = exported(rng, {ID_COLUMN: customer_id}, static, c).assign(**{TARGET_COLUMN: purchased})
    # Rounded: np.exp differs in the last bit between CPUs (SVML on AVX-512, glibc elsewhere).
    probabilities = pd.DataFrame({ID_COLUMN: customer_id, PROBABILITY_COLUMN: round_significant_bits(probability)})
    return customers, probabilities


def true_probabilities_of(test: pd.DataFrame, truth: pd.DataFrame, id_columns: list[str],
                          dates: np.ndarray | None = None) -> np.ndarray | None:
    """The true probabilities of the test rows, joined on the ID columns the truth has (and for a dated
    split on the snapshot `dates` too), or None when `truth` does not cover every one of them."""
    keys = [column for column in id_columns if column in truth.columns]
    if not keys or PROBABILITY_COLUMN not in truth.columns or (dates is not None and SNAPSHOT_COLUMN not in truth):
        return None
    rows = test[keys].reset_index(drop=True)
    for key in keys:
        # A date among the ID columns: the table reader parses it (datetime.date), the truth keeps its text.
        if rows[key].dtype != truth[key].dtype:
            rows[key], truth = rows[key].astype(str), truth.assign(**{key: truth[key].astype(str)})
    if dates is not None:
        rows[SNAPSHOT_COLUMN] = dates
        truth = truth.assign(**{SNAPSHOT_COLUMN: pd.to_datetime(truth[SNAPSHOT_COLUMN]).to_numpy("datetime64[ns]")})
        keys = keys + [SNAPSHOT_COLUMN]
    if truth.duplicated(keys).any():
        return None  # the keys do not name one row of the truth: a dated truth joined without its dates
    joined = rows.merge(truth, on=keys, how="left", validate="one_to_one")
    if joined[PROBABILITY_COLUMN].isna().any():
        return None
    return joined[PROBABILITY_COLUMN].to_numpy(float)
