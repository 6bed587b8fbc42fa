"""Example tables of the kinds users bring instead of the generated customers, with the `data`
params that read them, and a table written as a warehouse unload (parquet parts).

Not used by any stage: the tests, the benchmarks and the docs try the pipeline on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The `data` section of params.yaml for own_customer_table() written to its path.
OWN_TABLE_DATA: dict[str, Any] = {
    "path": "data/own/export.csv", "events": "data/raw/events", "target": "converted", "positive_label": "Yes",
    "id_columns": ["account_ref"], "categorical_columns": None, "duplicate_ids": "warn",
    "time_column": None, "gap_periods": 0,
}


def own_customer_table(rows: int = 3000, seed: int = 5) -> pd.DataFrame:
    """A user's export: text IDs, a "Yes"/"No" target, string categoricals, gaps, 90 columns.

    Write it to OWN_TABLE_DATA["path"] and set params.yaml's `data` section to OWN_TABLE_DATA.
    """
    rng = np.random.default_rng(seed)
    frame = {"account_ref": [f"AC-{i:06d}" for i in rng.permutation(rows)]}
    hidden = rng.normal(size=rows)
    for i in range(80):
        values = rng.normal(size=rows) + (0.8 * hidden if i < 5 else 0.0)
        values[rng.random(rows) < 0.05 * (i % 4)] = np.nan  # a quarter of the columns complete
        frame[f"metric_{i:02d}"] = values.round(3)
    for i in range(8):
        levels = np.array(["alpha", "beta", "gamma", "delta", "rare_one", "rare_two"], dtype=object)
        codes = rng.choice(len(levels), size=rows, p=[0.4, 0.3, 0.2, 0.095, 0.004, 0.001])
        values = levels[codes]
        values[rng.random(rows) < 0.03] = None
        frame[f"segment_{i}"] = values
    frame["plan"] = np.where(hidden + rng.normal(size=rows) > 1, "premium", "basic").astype(object)
    probability = 1 / (1 + np.exp(-(-3.6 + 1.2 * hidden + 0.8 * (frame["segment_0"] == "alpha"))))
    frame["converted"] = np.where(rng.random(rows) < probability, "Yes", "No").astype(object)
    return pd.DataFrame(frame)


# The `data` section of params.yaml for three_column_table() written to its path.
THREE_COLUMN_DATA: dict[str, Any] = {
    "path": "data/own/three_columns.csv", "events": "data/raw/events", "target": "purchased", "positive_label": 1,
    "id_columns": ["customer_id"], "categorical_columns": [], "duplicate_ids": "warn",
    "time_column": None, "gap_periods": 0,
}


def three_column_table(rows: int = 10_000, seed: int = 3) -> pd.DataFrame:
    """A small table where a logistic regression is the right model: the log-odds of buying are linear in
    `visits`, and `noise_a` and `noise_b` carry nothing (about 8 % buyers).

    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)).round(4), columns=["visits", "noise_a", "noise_b"])
    probability = 1 / (1 + np.exp(-(-3.0 + 1.2 * frame["visits"])))
    frame["purchased"] = (rng.random(rows) < probability).astype(np.int8)
    frame.insert(0, "customer_id", np.arange(1, rows + 1))
    return frame


def parquet_parts_of(table: pd.DataFrame | Path, folder: Path, parts: int = 3) -> Path:
    """A table (a DataFrame, or a CSV file's path) as `parts` parquet files in `folder`, named so that name
    order is row order."""
    folder.mkdir(parents=True)
    frame = table if isinstance(table, pd.DataFrame) else pd.read_csv(table)
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"customers-{number:02d}.parquet", index=False)
    return folder
