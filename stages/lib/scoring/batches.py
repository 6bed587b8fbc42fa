"""The one scoring path: a batch of rows to calibrated probability, decision, reasons; then rank and decile.

`score_batch` scores one batch wherever the engine runs it: a chunk of the input
in this process (local engine), a partition on a Dask worker, or a partition of
the processed test split in evaluate. `score_table` maps it over a table with
`Engine.map_and_write`: only each row's probability and raw score are gathered
to rank all rows at once (ties in probability are ranked by the model's raw
score, then by input order), and the ranks go back to be written beside the
rest. While it scores, every input feature is counted in the preprocessor's drift
bins (stages.lib.data.drift), which never changes a score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.data import drift
from stages.lib.data.schema import LABEL, SNAPSHOT, check_scoring_table, split_features
from stages.lib.engines.base import Engine, Table
from stages.lib.evaluation.explanations import contributions, empty_reasons, reason_codes
from stages.lib.modeling.ranking import best_first
from stages.lib.scoring.scorer import Scorer

BATCH_ROWS = 200_000
DECILES = 10

PROBABILITY = "purchase_probability"
DECISION = "will_buy"
RANK = "rank"
DECILE = "decile"
RAW = "__raw_score__"  # kept beside the probability until the rows are ranked, never written


@dataclass(frozen=True)
class BatchSummary:
    rows: int
    ignored: list[str]                       # input columns the model does not use
    drift: dict[str, np.ndarray] | None      # each feature's counts in its drift bins (None: no rows)
    dates: tuple = ()                        # the distinct snapshot dates of the rows (a dated model's input)
    # A processed dated split: each snapshot date's drift counts, by date (ns since 1970).
    drift_by_date: dict[int, dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class ScoringSummary:
    rows: int
    flagged: int                             # customers with will_buy 1
    ignored: list[str]
    drift: dict[str, np.ndarray] | None
    dates: tuple = ()                        # the input's distinct snapshot dates, in order


def score_batch(batch: pd.DataFrame, offset: int, scorer: Scorer, id_columns: list[str], source: str,
                processed: bool = False) -> tuple[pd.DataFrame, BatchSummary]:
    """One batch's IDs, probability, decision, raw score, reasons (`scorer.explain`) and baselines' scores,
    and its drift counts. A `processed` batch is rows preprocess wrote (features and label: the test
    split, whose label is kept); otherwise customer rows, checked and transformed by the preprocessor."""
    where = f"{source} (rows {offset + 1:,}-{offset + len(batch):,})"
    preprocessor = scorer.preprocessor
    time_column = preprocessor.time_column
    by_date = None
    if processed:
        features, y = split_features(batch, id_columns, source)
        counts, ignored = preprocessor.processed_drift_counts(features), []
        if SNAPSHOT in batch.columns:
            when = batch[SNAPSHOT].to_numpy("datetime64[ns]").astype(np.int64)
            by_date = {int(date): preprocessor.processed_drift_counts(features[when == date])
                       for date in np.unique(when)}
    else:
        ignored = [c for c in check_scoring_table(batch, list(id_columns) + preprocessor.input_columns, source)
                   if c != time_column]
        features, counts = preprocessor.transform_and_count(batch[preprocessor.input_columns], where)
    scored = batch[list(id_columns)].reset_index(drop=True)
    # A dated model's rows keep their snapshot date beside the IDs (the processed split's, or the input's).
    kept_date = SNAPSHOT if processed else time_column
    dates = ()
    if kept_date is not None and kept_date in batch.columns:
        scored[kept_date] = batch[kept_date].to_numpy()
        dates = tuple(sorted({str(value) for value in pd.unique(batch[kept_date].dropna())}))
    probability, raw = scorer.scores_of(features) if len(batch) else (np.empty(0), np.empty(0))
    scored[PROBABILITY] = probability
    scored[DECISION] = scorer.threshold.flags(probability, raw).astype(np.int8)
    scored[RAW] = raw
    if processed:
        scored[LABEL] = y
    for name, model in scorer.baselines.items():
        scored[name] = model.predict_proba(features)[:, 1] if len(batch) else np.empty(0)
    if scorer.explain:
        count = min(scorer.explain, scorer.model.n_features_in_)
        reasons = (reason_codes(contributions(scorer.model, features, scorer.threads)[0], features, count)
                   if len(batch) else empty_reasons(count))
        scored = pd.concat([scored, reasons], axis=1)
    return scored, BatchSummary(len(batch), ignored, counts if len(batch) else None, dates, by_date)


def rank_and_decile(probability: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1 = most likely buyer; decile 1 = the top 10 % of the ranked list."""
    rows = len(probability)
    order = best_first(probability, raw)
    rank = np.empty(rows, dtype=np.int64)
    rank[order] = np.arange(1, rows + 1)
    decile = ((rank - 1) * DECILES // max(rows, 1) + 1).astype(np.int8)
    return rank, decile


def _ranks(probability: np.ndarray, raw: np.ndarray) -> dict[str, np.ndarray]:
    rank, decile = rank_and_decile(probability, raw)
    return {RANK: rank, DECILE: decile}


def score_table(engine: Engine, path: Table, output: str | Path, scorer: Scorer, threads: int | str,
                batch_rows: int = BATCH_ROWS) -> ScoringSummary:
    """Score every row of a customer table where the engine runs the work and write, in input order,
    its IDs, probability, decision, reasons, rank and decile to `output`; `threads` LightGBM threads per
    batch (a number, or `auto`: as many as the engine gives one piece of work)."""
    id_columns = list(scorer.preprocessor.id_columns or [])
    scorer = dataclasses.replace(scorer, threads=engine.fit_threads(threads, 1))
    # Categories are read as text in every CSV chunk, so a chunk of numeric-looking codes reads like the rest.
    keys, summaries = engine.map_and_write(score_batch, path, output, scorer, id_columns, str(path),
                                           keys=[PROBABILITY, RAW], finish=_ranks, dropped=[RAW],
                                           batch_rows=batch_rows, text_columns=scorer.preprocessor.categorical_columns)
    flagged = int(scorer.threshold.flags(keys[PROBABILITY], keys[RAW]).sum())
    return ScoringSummary(sum(s.rows for s in summaries), flagged, summaries[0].ignored,
                          drift.added_counts([s.drift for s in summaries]),
                          tuple(sorted({date for s in summaries for date in s.dates})))


@dataclass(frozen=True)
class HeldOutScores:
    """evaluate's view of the scored test split."""

    y: np.ndarray
    probability: np.ndarray                 # calibrated
    raw: np.ndarray                         # the model's own score: the order of customers
    baselines: dict[str, np.ndarray]
    ids: pd.DataFrame                       # the test customers' ID columns, in the same order
    drift: dict[str, np.ndarray] | None     # each feature's counts in its drift bins
    dates: np.ndarray | None                # a dated split's snapshot date of each row
    drift_by_date: dict[int, dict[str, np.ndarray]] | None   # each date's drift counts


def score_held_out(engine: Engine, path: Table, scorer: Scorer, id_columns: list[str]) -> HeldOutScores:
    """Score the processed test split with the model and `scorer.baselines`, partition by partition on the
    engine (`score_batch`, the path new customers take); only IDs, labels and scores come back."""
    pieces = engine.map(score_batch, path, scorer, list(id_columns), str(path), True)
    scores = pd.concat([frame for frame, _ in pieces], ignore_index=True)
    return HeldOutScores(
        y=scores[LABEL].to_numpy(np.int8), probability=scores[PROBABILITY].to_numpy(np.float64),
        raw=scores[RAW].to_numpy(np.float64), baselines={name: scores[name].to_numpy() for name in scorer.baselines},
        ids=scores[list(id_columns)], drift=drift.added_counts([summary.drift for _, summary in pieces]),
        dates=scores[SNAPSHOT].to_numpy("datetime64[ns]") if SNAPSHOT in scores.columns else None,
        drift_by_date=_added_by_date([summary.drift_by_date for _, summary in pieces]))


def _added_by_date(pieces: list[dict | None]) -> dict[int, dict[str, np.ndarray]] | None:
    pieces = [piece for piece in pieces if piece]
    if not pieces:
        return None
    dates = sorted({date for piece in pieces for date in piece})
    return {date: drift.added_counts([piece.get(date) for piece in pieces]) for date in dates}
