"""Check the customer table, split it, and fit the preprocessor on the training split only.

The split is stratified and keeps file order inside each side; each customer's
first row is kept, so no customer is on both sides. The preprocessor
(`stages.lib.features`) is fitted on training rows and applied to both.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from stages.lib.errors import DataError
from stages.lib.features import CustomerPreprocessor
from stages.lib.params import DataParams, PreprocessParams
from stages.lib.schema import LABEL, binary_target, check_training_table


def split_customers(frame: pd.DataFrame, y: np.ndarray, test_size: float, seed: int,
                    source: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Stratified train/test split; both sides must hold buyers and non-buyers."""
    buyers = int(y.sum())
    test_buyers = int(round(buyers * test_size))
    if test_buyers < 1 or buyers - test_buyers < 2:
        raise DataError(
            f"{source}: {buyers} buyer rows cannot be split with preprocess.test_size={test_size} "
            "so both splits hold buyers; use more data or change preprocess.test_size"
        )
    rows = np.arange(len(frame))
    try:
        train_rows, test_rows = train_test_split(rows, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as error:
        raise DataError(f"{source}: cannot split ({str(error).splitlines()[0]}); "
                        "use more data or change preprocess.test_size") from None
    # Keep the file order inside each split, so outputs do not depend on the shuffle's order.
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    return frame.iloc[train_rows], frame.iloc[test_rows], y[train_rows], y[test_rows]


def deduplicate_ids(frame: pd.DataFrame, data: DataParams) -> pd.DataFrame:
    """Keep each customer's first row, so no customer is on both sides of the split."""
    if not data.id_columns:
        return frame
    keep = ~frame.duplicated(subset=list(data.id_columns), keep="first")
    if keep.all():
        return frame
    print(f"preprocess: kept the first of each repeated customer ID, dropped {int((~keep).sum()):,} rows",
          file=sys.stderr)
    return frame[keep]


def preprocess_customers(frame: pd.DataFrame, data: DataParams, preprocess: PreprocessParams, seed: int,
                         source: str = "input") -> tuple[pd.DataFrame, pd.DataFrame, CustomerPreprocessor]:
    """Return (train, test, fitted preprocessor); tables hold IDs, features and LABEL."""
    schema = check_training_table(frame, data, source)
    frame = deduplicate_ids(frame, data)
    y = binary_target(frame, data, source)
    train_raw, test_raw, y_train, y_test = split_customers(frame, y, preprocess.test_size, seed, source)
    preprocessor = CustomerPreprocessor.for_schema(schema, preprocess.rare_category_min_count)
    preprocessor.fit(train_raw)

    def assemble(raw: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
        table = preprocessor.transform(raw, source).reset_index(drop=True)
        ids = raw[list(data.id_columns)].reset_index(drop=True)
        return pd.concat([ids, table, pd.DataFrame({LABEL: labels.astype(np.int8)})], axis=1)

    return assemble(train_raw, y_train), assemble(test_raw, y_test), preprocessor
