"""predict: score new customers with the trained model (not a pipeline stage).

Loads the preprocessor, model, calibration and threshold from the model
directory, after checking that each file is the one dvc.lock records (so a
stale or modified model is refused before it is unpickled), and writes, for
every input row in input order:

    <ID columns>, purchase_probability, will_buy, rank, decile

purchase_probability is calibrated; will_buy is 1 when it reaches the
threshold chosen by `calibrate`; rank 1 is the most likely buyer; decile 1 is
the top 10 % of the ranked list. Ties in probability are ranked by the model's
raw score, then by input order. The input needs the ID columns (those of the
training table, saved with the preprocessor: params.yaml is not read) and every column
the model was trained on; other columns are ignored. It is read in chunks, so
memory holds only the IDs and scores of all rows.

    python -m stages.predict --input customers.csv --output scores.csv
    python -m stages.predict --input customers.parquet --output scores.parquet --models models
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stages.lib.artifacts import find_lock
from stages.lib.cli import run_stage, stage_parser
from stages.lib.compute import usable_cores
from stages.lib.errors import ArtifactError
from stages.lib.scoring import (
    BATCH_ROWS,
    DECISION,
    DEFAULT_MODELS_DIR,
    input_batches,
    load_scoring_model,
    score_batches,
)
from stages.lib.tables import table_format, write_table


def main(argv: Sequence[str]) -> None:
    # LightGBM's OpenMP threads sleep instead of spinning while they wait, so scoring with every
    # core does not collapse when other work holds one (benchmarks/README.md, "Scoring"). libgomp
    # reads this when LightGBM loads, with the model below; a value the user set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Everything scoring needs was saved with the model; params.yaml may have moved on since.
    parser = stage_parser(__doc__, "stages.predict", reads_params=False)
    parser.add_argument("--input", required=True, help="customers to score (.csv or .parquet)")
    parser.add_argument("--output", required=True, help="output: scores (.csv or .parquet)")
    parser.add_argument("--models", default=DEFAULT_MODELS_DIR,
                        help=f"directory of the model files (default: {DEFAULT_MODELS_DIR})")
    parser.add_argument("--lock", help="dvc.lock the model files must match (default: the first dvc.lock "
                        "in or above the model directory, else in or above the current directory)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS,
                        help=f"rows scored at a time (default: {BATCH_ROWS:,})")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="LightGBM prediction threads; scores do not depend on it "
                             "(default: the cores this process may use, by CPU affinity and cgroup quota; "
                             "threads wait passively unless OMP_WAIT_POLICY is set)")
    args = parser.parse_args(argv)
    if args.batch_rows < 1:
        parser.error("--batch-rows must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    table_format(args.output)  # an unknown output format fails before any work
    if args.lock is not None:
        lock = Path(args.lock)
        if not lock.is_file():
            raise ArtifactError(f"{lock}: file not found; give the dvc.lock of the run that built the model")
    else:
        lock = find_lock(args.models, Path.cwd())
    scoring = load_scoring_model(args.models, lock, args.threads)
    # Categories are read as text in every chunk, so a chunk of numeric-looking codes reads like the rest.
    batches = input_batches(args.input, args.batch_rows, scoring.preprocessor.categorical_columns)
    scores, ignored = score_batches(batches, scoring,
                                    scoring.preprocessor.id_columns or [], args.input)
    write_table(scores, args.output)
    if ignored:
        # Said after scoring, so a run that fails prints its one error line and nothing else.
        print(f"note: {args.input}: ignored {len(ignored)} column(s) the model does not use: "
              f"{', '.join(map(str, ignored))}", file=sys.stderr)
    flagged = int(scores[DECISION].sum())
    print(f"predict: scored {len(scores):,} customers; {flagged:,} will buy at threshold "
          f"{scoring.threshold.probability:.4f}; wrote {args.output}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
