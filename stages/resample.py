"""resample: oversample buyers in the training split (SMOTE and variants), never the test split.

Writes the resampled training table, with original rows first and a
`__synthetic__` flag on the rows SMOTE made (their IDs are empty), and the
class counts before and after. `resample.method: none` or `class_weight`
copies the training split unchanged, partition by partition where
compute.engine says (the Dask engine writes a directory of parquet files).

    python -m stages.resample --train data/processed/train.parquet \
        --output data/resampled/train.parquet --metrics metrics/resample.json
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import write_json
from stages.lib.core.params import load_params
from stages.lib.core.tables import table_format
from stages.lib.engines.base import open_engine
from stages.lib.modeling.resampling import resample_split


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.resample")
    parser.add_argument("--train", required=True, help="processed training split")
    parser.add_argument("--output", required=True, help="output: resampled training table")
    parser.add_argument("--metrics", required=True, help="output: class counts (JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    table_format(args.output)  # an unknown suffix fails now, not after the work
    with open_engine(params.compute.engine) as engine:
        report = resample_split(engine, args.train, args.output, params.resample, params.base.seed,
                                params.data.id_columns)
    write_json(report, args.metrics)
    before, after = report["before"], report["after"]
    print(f"resample ({report['method']}): buyers {before['buyers']:,} -> {after['buyers']:,}, "
          f"non-buyers {before['non_buyers']:,} -> {after['non_buyers']:,}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
