"""preprocess: check the customer table, split it, and fit the preprocessor on training rows.

Reads the table named by data.path (CSV or parquet), checks it against the
`data:` schema, splits it into stratified train and test sets, fits missing
value handling and categorical encoding on the training split only and applies
it to both. The fitted preprocessor is saved so scoring applies the same transform.

With compute.engine dask and a partitioned input (a directory or glob of parquet
files), the cluster does this partition by partition and the splits are written
as directories of parquet files (stages/lib/preprocessing.py, `preprocess_on_dask`).

    python -m stages.preprocess --input data/raw/customers.csv \
        --train data/processed/train.parquet --test data/processed/test.parquet \
        --preprocessor models/preprocessor.joblib
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.cli import run_stage, stage_parser
from stages.lib.compute import dask_client
from stages.lib.files import save_object
from stages.lib.params import load_params
from stages.lib.preprocessing import preprocess_customers, preprocess_on_dask
from stages.lib.schema import LABEL
from stages.lib.tables import is_partitioned, read_table, table_format, write_table


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
    if params.compute.engine == "dask" and is_partitioned(args.input):
        with dask_client() as client:
            counts, preprocessor = preprocess_on_dask(args.input, params.data, params.preprocess, params.base.seed,
                                                      args.train, args.test, client)
        train_rows, buyers, test_rows = counts.train_rows, counts.train_buyers, counts.test_rows
    else:
        frame = read_table(args.input)
        train, test, preprocessor = preprocess_customers(
            frame, params.data, params.preprocess, params.base.seed, source=args.input
        )
        write_table(train, args.train)
        write_table(test, args.test)
        train_rows, buyers, test_rows = len(train), int(train[LABEL].sum()), len(test)
    save_object(preprocessor, args.preprocessor)
    print(
        f"preprocess: {train_rows:,} training rows ({buyers / train_rows:.2%} buyers), "
        f"{test_rows:,} test rows, {len(preprocessor.feature_names_out_)} features"
    )

if __name__ == "__main__":
    raise SystemExit(run_stage(main))
