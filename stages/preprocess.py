"""preprocess: check the customer table, split it, and fit the preprocessor on training rows.

Reads the table named by data.path (CSV or parquet, or a directory or glob of
parquet files), checks it against the `data:` schema, splits it into stratified
train and test sets by seeded keys of the customer IDs (with data.time_column: the
latest snapshot dates are the test set, the dates on each side are printed), fits missing value
handling and categorical encoding on the training split only and applies it to
both. The fitted preprocessor is saved so scoring applies the same transform.

compute.engine decides where (stages/lib/data/split.py): the local engine
writes each split as one parquet file, the Dask engine as a directory of parquet
files, one per input file; both hold the same rows.

    python -m stages.preprocess --input data/raw/customers.csv \
        --train data/processed/train.parquet --test data/processed/test.parquet \
        --preprocessor models/preprocessor.joblib
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import save_object
from stages.lib.core.params import load_params
from stages.lib.core.tables import table_format
from stages.lib.engines.base import open_engine


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
    # Imported here: scikit-learn (the preprocessor's base class) loads for the work, not for --help.
    from stages.lib.data.split import preprocess_table

    with open_engine(params.compute.engine) as engine:
        counts, periods, preprocessor = preprocess_table(engine, args.input, params.data, params.preprocess,
                                                         params.base.seed, args.train, args.test)
    save_object(preprocessor, args.preprocessor)
    print(
        f"preprocess: {counts.train_rows:,} training rows ({counts.train_buyers / counts.train_rows:.2%} buyers), "
        f"{counts.test_rows:,} test rows, {len(preprocessor.feature_names_out_)} features"
    )
    if periods is not None:
        left_out = f" ({counts.left_out_rows:,} rows left out)" if counts.left_out_rows else ""
        print(f"preprocess: out of time by {params.data.time_column}: {periods.summary()}{left_out}")

if __name__ == "__main__":
    raise SystemExit(run_stage(main))
