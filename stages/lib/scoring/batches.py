"""Scoring customers with the trained model: calibrated probability, decision, rank and decile.

`stages.predict` is the command around it. The model files are checked against
dvc.lock before anything unpickles them (`stages.lib.scoring.artifacts`). Ties in
probability are ranked by the model's raw score, then by input order. While it
scores, every input feature is counted in the preprocessor's drift bins
(stages.lib.data.drift), which never changes a score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier

from stages.lib.core.files import load_object, read_json
from stages.lib.core.tables import iter_table_batches, parquet_header, read_table
from stages.lib.data import drift
from stages.lib.data.preprocessor import CustomerPreprocessor
from stages.lib.data.schema import check_scoring_table
from stages.lib.evaluation.explanations import contributions, empty_reasons, reason_codes
from stages.lib.modeling.ranking import Threshold, best_first
from stages.lib.scoring.artifacts import verify_artifacts

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
T = TypeVar("T")
RAW = "__raw_score__"  # kept beside the probability until the rows are ranked, never written


@dataclass(frozen=True)
class ScoringModel:
    """Everything needed to turn customer rows into calibrated probabilities and decisions."""

    preprocessor: CustomerPreprocessor
    model: object
    calibrator: object
    threshold: Threshold
    threads: int = 1
    explain: int = 0  # reason codes per customer (stages.lib.evaluation.explanations), 0: none

    def features(self, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict | None]:
        """Processed features, and the rows' counts in the drift bins (None: the preprocessor has no
        reference)."""
        return self.preprocessor.transform_and_count(frame[self.preprocessor.input_columns], source)

    def scores_of(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, raw scores) of processed features."""
        return score_features(features, self.model, self.calibrator, self.threads)

    def reasons(self, features: pd.DataFrame | None) -> pd.DataFrame | None:
        """The `explain` reason columns of processed features (None: of no rows), or None when none are
        asked for."""
        if not self.explain:
            return None
        if features is None:
            return empty_reasons(min(self.explain, self.model.n_features_in_))
        return reason_codes(contributions(self.model, features, self.threads)[0], features, self.explain)


@dataclass(frozen=True)
class ScoringSummary:
    rows: int
    flagged: int                                # customers with will_buy 1
    ignored: list[str]                          # input columns the model does not use
    drift: dict[str, np.ndarray] | None         # each feature's counts in its drift bins; None: no reference


def model_files(models_dir: str | Path) -> dict[str, Path]:
    """Each file predict loads, keyed by the path dvc.lock records for it."""
    return {name: Path(models_dir) / Path(name).name for name in MODEL_FILES}


def load_scoring_model(models_dir: str | Path, lock: Path | None, threads: int = 1, explain: int = 0) -> ScoringModel:
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
        explain=explain,
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


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, each next one produced in a background thread while the caller works on the current one.

    Scoring reads and transforms the next batch while LightGBM predicts this one (its C code
    releases the GIL); the order and the values are those of `items`.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, _DONE)
        while (item := pending.result()) is not _DONE:
            pending = pool.submit(next, items, _DONE)
            yield item


_DONE = object()


def _prepared(batches: Iterable[pd.DataFrame], scoring: ScoringModel, id_columns: list[str],
              source: str) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None, dict | None, list[str] | None]]:
    """Each batch as (IDs, features or None when it has no rows, drift counts or None, the ignored columns:
    first batch only)."""
    required = list(id_columns) + scoring.preprocessor.input_columns
    first_row = 0
    for number, batch in enumerate(batches):
        ignored = check_scoring_table(batch, required, source) if number == 0 else None
        ids = batch[list(id_columns)].reset_index(drop=True)
        if batch.empty:
            yield ids, None, None, ignored
            continue
        where = f"{source} (rows {first_row + 1:,}-{first_row + len(batch):,})"
        yield ids, *scoring.features(batch, where), ignored
        first_row += len(batch)


def score_batches(batches: Iterable[pd.DataFrame], scoring: ScoringModel, id_columns: list[str],
                  source: str) -> tuple[pd.DataFrame, ScoringSummary]:
    """Score every row: IDs, calibrated probability, decision, rank and decile, in input order."""
    ids, probabilities, raws, reasons, counts = [], [], [], [], []
    ignored: list[str] = []
    for batch_ids, features, batch_counts, first_ignored in _read_ahead(_prepared(batches, scoring, id_columns,
                                                                                   source)):
        if first_ignored is not None:
            ignored = first_ignored
        ids.append(batch_ids)
        if features is None:
            continue
        probability, raw = scoring.scores_of(features)
        raws.append(raw)
        probabilities.append(probability)
        reasons.append(scoring.reasons(features))
        counts.append(batch_counts)

    raw = np.concatenate(raws) if raws else np.empty(0)
    probability = np.concatenate(probabilities) if probabilities else np.empty(0)
    rank, decile = rank_and_decile(probability, raw)
    scores = pd.concat(ids, ignore_index=True)
    scores[PROBABILITY] = probability
    scores[DECISION] = scoring.threshold.flags(probability, raw).astype(np.int8)
    if scoring.explain and reasons:
        scores = pd.concat([scores, pd.concat(reasons, ignore_index=True)], axis=1)
    scores[RANK] = rank
    scores[DECILE] = decile
    summary = ScoringSummary(len(scores), int(scores[DECISION].sum()), ignored, drift.added_counts(counts))
    return scores, summary


def raw_scores(model, features: pd.DataFrame, threads: int) -> np.ndarray:
    """The model's own probability of buying, for either family (LightGBM with `threads` threads)."""
    if isinstance(model, LGBMClassifier):
        # Prediction is per row, so any thread count gives the same scores.
        return model.predict_proba(features, num_threads=threads)[:, 1]
    return model.predict_proba(features)[:, 1]  # stages.lib.modeling.linear: rounded, the same on any CPU


def score_features(features: pd.DataFrame, model, calibrator, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities, raw scores) of processed features, such as the test split's."""
    raw = raw_scores(model, features, threads)
    return np.asarray(calibrator.transform(raw), dtype=np.float64), raw


def _score_partition(partition: pd.DataFrame, offset: int, scoring: ScoringModel, id_columns: list[str],
                     source: str) -> tuple[pd.DataFrame, dict | None]:
    """IDs, probability, decision and raw score of one partition (on a Dask worker), and its drift counts."""
    where = f"{source} (rows {offset + 1:,}-{offset + len(partition):,})"
    check_scoring_table(partition, list(id_columns) + scoring.preprocessor.input_columns, source)
    scores = partition[list(id_columns)].reset_index(drop=True)
    features, counts = scoring.features(partition, where) if len(partition) else (None, None)
    probability, raw = scoring.scores_of(features) if features is not None else (np.empty(0), np.empty(0))
    scores[PROBABILITY] = probability
    scores[DECISION] = scoring.threshold.flags(probability, raw).astype(np.int8)
    scores[RAW] = raw
    if scoring.explain:
        scores = pd.concat([scores, scoring.reasons(features)], axis=1)
    return scores, counts


def _ranks(probability: np.ndarray, raw: np.ndarray) -> dict[str, np.ndarray]:
    rank, decile = rank_and_decile(probability, raw)
    return {RANK: rank, DECILE: decile}


def score_on_cluster(engine, path: str | Path, scoring: ScoringModel, id_columns: list[str],
                     output: Path) -> ScoringSummary:
    """Score a parquet table (file, directory or glob) partition by partition on the Dask engine's cluster
    and write the scores as a directory of parquet files, one per partition, in input order.

    Probabilities and decisions are computed on the workers; only each row's probability and raw
    score come back, to rank all rows at once (as `score_batches` does), and the ranks go back to
    the workers that write the files. Each partition's drift counts come back with its scores.
    """
    source = str(path)
    ignored = check_scoring_table(parquet_header(path), list(id_columns) + scoring.preprocessor.input_columns,
                                  source)
    # One LightGBM thread per task: the cluster's worker threads are the parallelism.
    shared = (dataclasses.replace(scoring, threads=1), list(id_columns), source)
    keys, summaries = engine.score_partitions(path, output, _score_partition, [PROBABILITY, RAW], _ranks, [RAW],
                                              shared)
    flagged = int(scoring.threshold.flags(keys[PROBABILITY], keys[RAW]).sum())
    return ScoringSummary(len(keys[PROBABILITY]), flagged, ignored, drift.added_counts(summaries))
