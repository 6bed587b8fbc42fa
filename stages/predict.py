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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from stages.artifacts import find_lock, verify_artifacts
from stages.cli import run_stage, stage_parser
from stages.errors import ArtifactError
from stages.features import CustomerPreprocessor
from stages.schema import check_scoring_table
from stages.tables import iter_table_batches, load_object, read_json, read_table, table_format, write_table

# The files predict loads, by the path dvc.yaml gives them (`vars: paths:`) and
# dvc.lock records; `--models DIR` loads the same file names from DIR.
PREPROCESSOR = "models/preprocessor.joblib"
MODEL = "models/model.joblib"
CALIBRATOR = "models/calibrator.joblib"
THRESHOLD = "models/threshold.json"
MODEL_FILES = (PREPROCESSOR, MODEL, CALIBRATOR, THRESHOLD)
DEFAULT_MODELS_DIR = "models"

BATCH_ROWS = 200_000
DECILES = 10

PROBABILITY = "purchase_probability"
DECISION = "will_buy"
RANK = "rank"
DECILE = "decile"


@dataclass(frozen=True)
class ScoringModel:
    """Everything needed to turn customer rows into calibrated probabilities and decisions."""

    preprocessor: CustomerPreprocessor
    model: object
    calibrator: object
    threshold: float
    threads: int = 1

    def raw_scores(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        features = self.preprocessor.transform(frame[self.preprocessor.input_columns], source)
        # Prediction is per row, so any thread count gives the same scores; the model's
        # own n_jobs (model.threads, 1) was chosen for training, where threads contend.
        return self.model.predict_proba(features, num_threads=self.threads)[:, 1]


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def model_files(models_dir: str | Path) -> dict[str, Path]:
    """Each file predict loads, keyed by the path dvc.lock records for it."""
    return {name: Path(models_dir) / Path(name).name for name in MODEL_FILES}


def load_scoring_model(models_dir: str | Path, lock: Path | None, threads: int = 1) -> ScoringModel:
    """Check every model file against dvc.lock, then load them."""
    files = model_files(models_dir)
    verify_artifacts(files, lock)
    threshold = read_json(files[THRESHOLD])
    return ScoringModel(
        preprocessor=load_object(files[PREPROCESSOR]),
        model=load_object(files[MODEL]),
        calibrator=load_object(files[CALIBRATOR]),
        threshold=float(threshold["threshold"]),
        threads=threads,
    )


def input_batches(path: str | Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The input in chunks; a table with a header and no rows gives one empty chunk with the header."""
    path = Path(path)
    empty = True
    for batch in iter_table_batches(path, batch_rows):
        empty = False
        yield batch
    if empty:
        # A parquet file without rows has no batches; its columns are in the schema.
        yield read_table(path)


def rank_and_decile(probability: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = most likely buyer; decile 1 = the top 10 % of the ranked list."""
    rows = len(probability)
    # lexsort sorts by its last key first: probability, then raw score, then input order.
    order = np.lexsort((np.arange(rows), -raw, -probability))
    rank = np.empty(rows, dtype=np.int64)
    rank[order] = np.arange(1, rows + 1)
    decile = ((rank - 1) * DECILES // max(rows, 1) + 1).astype(np.int8)
    return rank, decile


def score_batches(batches: Iterable[pd.DataFrame], scoring: ScoringModel, id_columns: list[str],
                  source: str) -> tuple[pd.DataFrame, list[str]]:
    """Score every row: IDs, calibrated probability, decision, rank and decile, in input order.

    Returns the scores and the input columns the model ignored.
    """
    required = list(id_columns) + scoring.preprocessor.input_columns
    ids, probabilities, raws = [], [], []
    ignored: list[str] = []
    first_row = 0
    for number, batch in enumerate(batches):
        if number == 0:
            ignored = check_scoring_table(batch, required, source)
        ids.append(batch[list(id_columns)].reset_index(drop=True))
        if batch.empty:
            continue
        where = f"{source} (rows {first_row + 1:,}-{first_row + len(batch):,})"
        raw = scoring.raw_scores(batch, where)
        raws.append(raw)
        probabilities.append(np.asarray(scoring.calibrator.transform(raw), dtype=np.float64))
        first_row += len(batch)

    raw = np.concatenate(raws) if raws else np.empty(0)
    probability = np.concatenate(probabilities) if probabilities else np.empty(0)
    rank, decile = rank_and_decile(probability, raw)
    scores = pd.concat(ids, ignore_index=True)
    scores[PROBABILITY] = probability
    scores[DECISION] = (probability >= scoring.threshold).astype(np.int8)
    scores[RANK] = rank
    scores[DECILE] = decile
    return scores, ignored


def main(argv: Sequence[str]) -> None:
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
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="LightGBM prediction threads; scores do not depend on it "
                             "(default: the cores this process may use)")
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
    scores, ignored = score_batches(input_batches(args.input, args.batch_rows), scoring,
                                    scoring.preprocessor.id_columns or [], args.input)
    write_table(scores, args.output)
    if ignored:
        # Said after scoring, so a run that fails prints its one error line and nothing else.
        print(f"note: {args.input}: ignored {len(ignored)} column(s) the model does not use: "
              f"{', '.join(map(str, ignored))}", file=sys.stderr)
    flagged = int(scores[DECISION].sum())
    print(f"predict: scored {len(scores):,} customers; {flagged:,} will buy at threshold "
          f"{scoring.threshold:.4f}; wrote {args.output}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
