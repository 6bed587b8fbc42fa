"""The test split's scores for evaluate: the model's (calibrated and raw) and each baseline's, with the labels.

Each partition of the test split is scored where the engine keeps it (the Dask
engine: on the workers), and only the IDs, labels and scores come back, so no
process holds the test split's features unless the engine keeps the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError
from stages.lib.core.tables import read_table
from stages.lib.data import drift
from stages.lib.data.preprocessor import CustomerPreprocessor
from stages.lib.data.schema import LABEL, split_features
from stages.lib.engines.base import Engine
from stages.lib.evaluation.baselines import baseline_scores
from stages.lib.scoring.batches import score_features

PROBABILITY, RAW = "__probability__", "__raw__"


@dataclass(frozen=True)
class HeldOutScores:
    y: np.ndarray
    probability: np.ndarray                 # calibrated
    raw: np.ndarray                         # the model's own score: the order of customers
    baselines: dict[str, np.ndarray]
    ids: pd.DataFrame                       # the test customers' ID columns, in the same order


def read_labels(path: str | Path) -> np.ndarray:
    """The 0/1 labels of a processed split (a file or partitioned), read without its features."""
    try:
        return read_table(path, columns=[LABEL])[LABEL].to_numpy(np.int8)
    except DataError:
        # No label column (not a table preprocess wrote) or an unreadable file: the whole read says which.
        return split_features(read_table(path), [], str(path))[1]


def _scores_of(table: pd.DataFrame, offset: int, model, calibrator, baselines: dict[str, object],
               id_columns: list[str], source: str, threads: int) -> pd.DataFrame:
    features, y = split_features(table, id_columns, source)
    probability, raw = score_features(features, model, calibrator, threads) if len(y) else (np.empty(0), np.empty(0))
    scores = pd.DataFrame({LABEL: y, PROBABILITY: probability, RAW: raw, **baseline_scores(baselines, features)})
    return pd.concat([table[id_columns].reset_index(drop=True), scores], axis=1)


def score_held_out(engine: Engine, path: str | Path, model, calibrator, baselines: dict[str, object],
                   id_columns: list[str], threads: int = 1) -> HeldOutScores:
    """Score the test split with the model and the fitted baselines, partition by partition on the engine,
    `threads` LightGBM threads each (the scores do not depend on them)."""
    scores = pd.concat(engine.map(_scores_of, path, model, calibrator, baselines, list(id_columns), str(path),
                                  threads), ignore_index=True)
    return HeldOutScores(
        y=scores[LABEL].to_numpy(np.int8), probability=scores[PROBABILITY].to_numpy(np.float64),
        raw=scores[RAW].to_numpy(np.float64), baselines={name: scores[name].to_numpy() for name in baselines},
        ids=scores[list(id_columns)])


def _processed_drift_counts(table: pd.DataFrame, offset: int, preprocessor: CustomerPreprocessor) -> dict:
    return preprocessor.processed_drift_counts(table)


def held_out_drift(engine: Engine, path: str | Path, preprocessor: CustomerPreprocessor) -> dict[str, float]:
    """Each input feature's PSI on the test split against the training split (stages.lib.data.drift), in the
    preprocessor's column order: what no drift looks like for a table of this many customers."""
    counts = engine.map(_processed_drift_counts, path, preprocessor, combine=drift.added_counts)
    table = drift.drift_table(preprocessor.drift_reference, counts).set_index("feature")
    return {feature: float(table.loc[feature, "psi"]) for feature in preprocessor.drift_reference.names()}
