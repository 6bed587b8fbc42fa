"""resample: oversample buyers in the training split (SMOTE and variants), never the test split.

Writes the resampled training table, with original rows first and a
`__synthetic__` flag on the rows SMOTE made (their IDs are empty), and the
class counts before and after. `resample.method: none` or `class_weight`
copies the training split unchanged.

    python -m stages.resample --train data/processed/train.parquet \
        --output data/resampled/train.parquet --metrics metrics/resample.json
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from stages.cli import run_stage, stage_parser
from stages.config import ResampleParams, load_params
from stages.modeling import OVERSAMPLERS, check_minority_size, oversample
from stages.schema import LABEL, SYNTHETIC, split_features
from stages.tables import read_table, table_format, write_json, write_table

def class_counts(y: np.ndarray) -> dict[str, int]:
    return {"buyers": int(np.sum(y == 1)), "non_buyers": int(np.sum(y == 0)), "rows": int(len(y))}


def resample_training(train: pd.DataFrame, resample: ResampleParams, seed: int,
                      id_columns: list[str], source: str = "training split") -> tuple[pd.DataFrame, dict]:
    """Return (resampled table, report of class counts before and after)."""
    features, y = split_features(train, id_columns, source)
    check_minority_size(int(min(y.sum(), len(y) - y.sum())), resample, source)
    if resample.method in OVERSAMPLERS:
        features_out, y_out = oversample(features, y, resample.method, resample.k_neighbors,
                                         resample.sampling_strategy, seed)
    else:
        features_out, y_out = features.reset_index(drop=True), y
    n_original, n_out = len(train), len(features_out)
    ids = train[id_columns].reset_index(drop=True).reindex(range(n_out))
    for column in id_columns:
        if pd.api.types.is_integer_dtype(train[column]):
            ids[column] = ids[column].astype("Int64")
    synthetic = np.arange(n_out) >= n_original
    table = pd.concat([ids, features_out, pd.DataFrame({LABEL: y_out, SYNTHETIC: synthetic})], axis=1)
    report = {
        "method": resample.method,
        "before": class_counts(y),
        "after": class_counts(y_out),
        "synthetic_rows": int(synthetic.sum()),
    }
    return table, report


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.resample")
    parser.add_argument("--train", required=True, help="processed training split")
    parser.add_argument("--output", required=True, help="output: resampled training table")
    parser.add_argument("--metrics", required=True, help="output: class counts (JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    table_format(args.output)  # an unknown suffix fails now, not after the work
    train = read_table(args.train)
    table, report = resample_training(train, params.resample, params.base.seed, params.data.id_columns,
                                      source=args.train)
    write_table(table, args.output)
    write_json(report, args.metrics)
    before, after = report["before"], report["after"]
    print(f"resample ({report['method']}): buyers {before['buyers']:,} -> {after['buyers']:,}, "
          f"non-buyers {before['non_buyers']:,} -> {after['non_buyers']:,}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
