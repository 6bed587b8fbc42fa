"""Scoring customers with the trained model: calibrated probability, decision, rank and decile.

`stages.predict` is the command around it. The model files are checked against
dvc.lock before anything unpickles them (`stages.lib.artifacts`). Ties in
probability are ranked by the model's raw score, then by input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.artifacts import verify_artifacts
from stages.lib.features import CustomerPreprocessor
from stages.lib.files import load_object, read_json
from stages.lib.ranking import Threshold, best_first
from stages.lib.schema import check_scoring_table
from stages.lib.tables import iter_table_batches, read_table

# The files scoring loads, by the path dvc.yaml gives them (`vars: paths:`) and
# dvc.lock records; `stages.predict --models DIR` loads the same file names from DIR.
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
    threshold: Threshold
    threads: int = 1

    def raw_scores(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        features = self.preprocessor.transform(frame[self.preprocessor.input_columns], source)
        # Prediction is per row, so any thread count gives the same scores; the model's
        # own n_jobs (model.threads, 1) was chosen for training, where threads contend.
        return self.model.predict_proba(features, num_threads=self.threads)[:, 1]


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
        threshold=Threshold.from_json(threshold),
        threads=threads,
    )


def input_batches(path: str | Path, batch_rows: int = BATCH_ROWS,
                  text_columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The input in chunks; a table with a header and no rows gives one empty chunk with the header."""
    path = Path(path)
    empty = True
    for batch in iter_table_batches(path, batch_rows, text_columns):
        empty = False
        yield batch
    if empty:
        # A parquet file without rows has no batches; its columns are in the schema.
        yield read_table(path)


def rank_and_decile(probability: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = most likely buyer; decile 1 = the top 10 % of the ranked list."""
    rows = len(probability)
    order = best_first(probability, raw)
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
    scores[DECISION] = scoring.threshold.flags(probability, raw).astype(np.int8)
    scores[RANK] = rank
    scores[DECILE] = decile
    return scores, ignored


def score_features(features: pd.DataFrame, model, calibrator) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities, raw scores) of processed features, such as the test split's."""
    raw = model.predict_proba(features)[:, 1]
    return np.asarray(calibrator.transform(raw), dtype=np.float64), raw
