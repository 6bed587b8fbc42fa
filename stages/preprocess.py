"""preprocess: check the customer table, split it, and fit the preprocessor on training rows.

Reads the table named by data.path (CSV or parquet), checks it against the
`data:` schema, splits it into stratified train and test sets, fits missing
value handling and categorical encoding on the training split only and applies
it to both. The fitted preprocessor is saved so scoring applies the same transform.

    python -m stages.preprocess --input data/raw/customers.csv \
        --train data/processed/train.parquet --test data/processed/test.parquet \
        --preprocessor models/preprocessor.joblib
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from stages.cli import run_stage, stage_parser
from stages.config import DataParams, PreprocessParams, load_params
from stages.errors import DataError
from stages.features import CustomerPreprocessor
from stages.schema import LABEL, binary_target, check_training_table
from stages.tables import read_table, save_object, table_format, write_table

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


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.preprocess")
    parser.add_argument("--input", required=True, help="customer table (data.path)")
    parser.add_argument("--train", required=True, help="output: processed training split (parquet)")
    parser.add_argument("--test", required=True, help="output: processed test split (parquet)")
    parser.add_argument("--preprocessor", required=True, help="output: fitted preprocessor (joblib)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    for output in (args.train, args.test):
        table_format(output)  # an unknown suffix fails now, not after the work
    frame = read_table(args.input)
    train, test, preprocessor = preprocess_customers(
        frame, params.data, params.preprocess, params.base.seed, source=args.input
    )
    write_table(train, args.train)
    write_table(test, args.test)
    save_object(preprocessor, args.preprocessor)
    print(
        f"preprocess: {len(train):,} training rows ({train[LABEL].mean():.2%} buyers), "
        f"{len(test):,} test rows, {len(preprocessor.feature_names_out_)} features"
    )


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
