"""predict: score new customers with the trained model (not a pipeline stage).

Loads the preprocessor, model, calibration and threshold from the model
directory, after checking that each file is the one dvc.lock records (so a
stale or modified model is refused before it is unpickled), and writes, for
every input row in input order:

    <ID columns>, [<time column>,] purchase_probability, will_buy, rank, decile

purchase_probability is calibrated; will_buy is 1 when it reaches the
threshold chosen by `calibrate`; rank 1 is the most likely buyer; decile 1 is
the top 10 % of the ranked list. Ties in probability are ranked by the model's
raw score, then by input order. With --explain N, before rank: reason_1 ...
reason_N, the N features that moved the customer's score most, either way, as
`feature=value (+)` ((-): down), and reason_1_contribution ... in log-odds
(stages/lib/evaluation/explanations.py). Every input feature's population stability index
against the training split is computed as the rows are scored (stages/lib/data/drift.py):
one `warning: drift:` line on stderr names the features above --drift-threshold,
and --drift-report writes every feature's PSI as JSON; scores never depend on it.
The input needs the ID columns (those of the
training table, saved with the preprocessor: params.yaml is not read) and every column
the model was trained on; other columns are ignored, but a dated model's time column
(data.time_column) is passed through beside the IDs, and an input of several dates
gets one note line (they are ranked as one list). It is read in chunks, so
memory holds only the IDs and scores of all rows.

    python -m stages.predict --input customers.csv --output scores.csv
    python -m stages.predict --input customers.parquet --output scores.parquet --models models
    python -m stages.predict --input customers.csv --output scores.csv --explain 3 --drift-report drift.json

A partitioned table (a directory of parquet files, or a glob such as
'customers/*.parquet') is read file by file in name order. An --output without a
suffix ('scores/') is written as a directory of parquet files. With --engine dask
the partitions are scored on a Dask cluster (DASK_SCHEDULER_ADDRESS or Dask's
config; else a LocalCluster on this machine's cores): parquet in, a directory of
parquet files out, one per partition, with the same rows and values as --engine local.

    python -m stages.predict --engine dask --input 'customers/*.parquet' --output scores/

With --as-of DATE and --events DIR instead of --input, the customers are built from
event tables as of that date, by the same function and definition (models/features.json,
written by the `features` stage and checked against dvc.lock) that built the
training rows: every customer who joined before DATE, from the events before it.
--features-output PATH keeps the table that was scored.

    python -m stages.predict --as-of 2025-07-31 --events data/raw/events --output scores.csv
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.cores import usable_cores
from stages.lib.core.errors import ArtifactError, DataError
from stages.lib.core.files import write_json
from stages.lib.core.params_types import AUTO, ENGINES
from stages.lib.core.tables import is_directory_output, is_partitioned, read_table, table_format, write_table
from stages.lib.data import drift
from stages.lib.engines.base import open_engine
from stages.lib.features.build import build_part, check_inputs
from stages.lib.features.event_tables import table_path
from stages.lib.scoring.artifacts import find_lock
from stages.lib.scoring.batches import BATCH_ROWS, score_table
from stages.lib.scoring.scorer import DEFAULT_MODELS_DIR, load_features_spec, load_scorer


def main(argv: Sequence[str]) -> None:
    # LightGBM's OpenMP threads sleep instead of spinning while they wait, so scoring with every
    # core does not collapse when other work holds one (benchmarks/README.md, "Scoring"). libgomp
    # reads this when LightGBM loads, with the model below; a value the user set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Everything scoring needs was saved with the model; params.yaml may have moved on since.
    parser = stage_parser(__doc__, "stages.predict", reads_params=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="customers to score (.csv or .parquet)")
    source.add_argument("--as-of", metavar="DATE", help="score the customers of --events as of this date "
                        "(an ISO date; features from the events before it)")
    parser.add_argument("--events", help="with --as-of: the directory of the customers and event tables")
    parser.add_argument("--features-output", metavar="PATH", help="with --as-of: also write the features that "
                        "were scored (.csv or .parquet)")
    parser.add_argument("--output", required=True, help="output: scores (.csv or .parquet)")
    parser.add_argument("--models", default=DEFAULT_MODELS_DIR,
                        help=f"directory of the model files (default: {DEFAULT_MODELS_DIR})")
    parser.add_argument("--lock", help="dvc.lock the model files must match (default: the first dvc.lock "
                        "in or above the model directory, else in or above the current directory)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS,
                        help=f"rows scored at a time (default: {BATCH_ROWS:,})")
    parser.add_argument("--threads", type=_thread_count, default=AUTO,
                        help="LightGBM prediction threads per batch; scores do not depend on it (default auto: "
                             f"the cores this process may use, {usable_cores()} here, by CPU affinity and cgroup "
                             "quota, or on Dask one per worker thread; threads wait passively unless "
                             "OMP_WAIT_POLICY is set)")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="add each customer's N strongest reasons (reason_1 ... and their contributions in "
                             "log-odds; default 0: none)")
    parser.add_argument("--drift-threshold", type=float, default=drift.DEFAULT_THRESHOLD, metavar="PSI",
                        help="warn about the features whose population stability index against the training split "
                             f"is above this (default: {drift.DEFAULT_THRESHOLD}; 0.1-0.25 is a moderate shift, "
                             "above 0.25 a large one)")
    parser.add_argument("--drift-report", metavar="PATH",
                        help="output: every feature's PSI and missing share in training and now (JSON)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local (default): this process; dask: partitions on a Dask cluster "
                             "(parquet in, a directory of parquet files out)")
    args = parser.parse_args(argv)
    if args.batch_rows < 1:
        parser.error("--batch-rows must be at least 1")
    if args.explain < 0:
        raise DataError(f"--explain {args.explain}: expected the number of reasons per customer, 0 or more "
                        "(0: none); e.g. --explain 3")
    if not args.drift_threshold > 0:
        raise DataError(f"--drift-threshold {args.drift_threshold:g}: expected a PSI above 0; e.g. "
                        f"--drift-threshold {drift.DEFAULT_THRESHOLD} (the usual rule of thumb)")
    to_directory = is_directory_output(args.output)
    if not to_directory:
        table_format(args.output)  # an unknown output format fails before any work
    if args.engine == "dask" and (not to_directory or (not is_partitioned(args.input)
                                                        and table_format(args.input) != "parquet")):
        raise DataError(f"--engine dask reads parquet (a file, a directory or a glob) and writes a directory; "
                        f"got --input {args.input} --output {args.output}: give an --output without a suffix "
                        "(scores/) and convert a CSV input to parquet")
    if args.lock is not None:
        lock = Path(args.lock)
        if not lock.is_file():
            raise ArtifactError(f"{lock}: file not found; give the dvc.lock of the run that built the model")
    else:
        lock = find_lock(args.models, Path.cwd())
    if args.as_of is None and (args.events or args.features_output):
        raise DataError("--events and --features-output go with --as-of DATE (features built from events); "
                        "with --input, the table already holds the features")
    scorer = load_scorer(args.models, lock, 1, args.explain)
    with contextlib.ExitStack() as stack:
        if args.as_of is not None:
            args.input = built_features(args.models, lock, args.as_of, args.events, args.features_output, stack)
        with open_engine(args.engine) as engine:
            summary = score_table(engine, args.input, args.output, scorer, args.threads, args.batch_rows)
    # Notes and warnings come after scoring, so a run that fails prints its one error line and nothing else.
    if summary.ignored:
        print(f"note: {args.input}: ignored {len(summary.ignored)} column(s) the model does not use: "
              f"{', '.join(map(str, summary.ignored))}", file=sys.stderr)
    if len(summary.dates) > 1:
        print(f"note: {args.input}: customers of {len(summary.dates)} snapshot dates ({summary.dates[0]} to "
              f"{summary.dates[-1]}) were ranked as one list; score one date at a time to rank within it",
              file=sys.stderr)
    if summary.drift is not None:
        table = drift.drift_table(scorer.preprocessor.drift_reference, summary.drift)
        warning = drift.warning_line(table, args.drift_threshold, summary.rows)
        if warning:
            print(warning, file=sys.stderr)
        if args.drift_report:
            write_json(drift.report(table, args.drift_threshold, summary.rows), args.drift_report)
    elif args.drift_report:
        write_json(drift.report(None, args.drift_threshold, summary.rows), args.drift_report)
    print(f"predict: scored {summary.rows:,} customers; {summary.flagged:,} will buy at threshold "
          f"{scorer.threshold.probability:.4f}; wrote {args.output}")


def built_features(models: str, lock: Path | None, as_of: str, events: str | None, output: str | None,
                   stack: contextlib.ExitStack) -> str:
    """The customers of `events` as of `as_of`, written where `output` says (else to a temporary file)."""
    if events is None:
        raise DataError("--as-of needs --events DIR: the directory of the customers and event tables "
                        "(data.events in params.yaml)")
    features = load_features_spec(models, lock)
    cutoff = as_of_date(as_of)
    if output is None:
        output = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="as-of-"))) / "features.parquet")
    table_format(output)
    check_inputs(events, features, [cutoff])
    customers = read_table(table_path(events, features.customers))
    [frame], _ = build_part(customers, 0, str(Path(events).resolve()), features, [cutoff], False)
    write_table(frame, output)
    return output


def as_of_date(text: str) -> str:
    """An --as-of date as ISO text; anything else is one error line."""
    try:
        return f"{pd.Timestamp(datetime.date.fromisoformat(text.strip())):%Y-%m-%d}"
    except ValueError:
        raise DataError(f"--as-of {text}: not an ISO date; give the date to score at, e.g. --as-of 2025-07-31 "
                        "(features from the events before it)") from None


def _thread_count(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads >= 1, or {AUTO}; got {text!r}")
    return int(text)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
