"""The test split's scores for evaluate: the model's (calibrated and raw) and each baseline's, with the labels.

The local engine reads the test split into this process. With compute.engine dask
and a partitioned test split (preprocess wrote it on the cluster), each file is
scored on a Dask worker and only the labels and scores come back (33 bytes per
test customer), so no process holds the test split's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.baselines import baseline_scores
from stages.lib.compute import dask_client
from stages.lib.errors import DataError
from stages.lib.params import Params
from stages.lib.schema import LABEL, split_features
from stages.lib.scoring import score_features
from stages.lib.tables import READ_ERRORS, is_partitioned, read_table, unreadable_on_cluster, worker_parts

PROBABILITY, RAW = "__probability__", "__raw__"


@dataclass(frozen=True)
class HeldOutScores:
    y: np.ndarray
    probability: np.ndarray                 # calibrated
    raw: np.ndarray                         # the model's own score: the order of customers
    baselines: dict[str, np.ndarray]
    table: pd.DataFrame | None              # the test split, when read into this process (its IDs)


def read_labels(path: str | Path) -> np.ndarray:
    """The 0/1 labels of a processed split (a file or partitioned), read without its features."""
    try:
        return read_table(path, columns=[LABEL])[LABEL].to_numpy(np.int8)
    except DataError:
        # No label column (not a table preprocess wrote) or an unreadable file: the whole read says which.
        return split_features(read_table(path), [], str(path))[1]


def _scores_of(table: pd.DataFrame, model, calibrator, baselines: dict[str, object], id_columns: list[str],
               source: str) -> pd.DataFrame:
    features, y = split_features(table, id_columns, source)
    probability, raw = score_features(features, model, calibrator) if len(y) else (np.empty(0), np.empty(0))
    return pd.DataFrame({LABEL: y, PROBABILITY: probability, RAW: raw, **baseline_scores(baselines, features)})


def _scores_of_file(part: Path, shipped: tuple, id_columns: list[str]) -> pd.DataFrame:
    model, calibrator, baselines = shipped
    return _scores_of(pd.read_parquet(part), model, calibrator, baselines, id_columns, str(part))


def score_held_out(path: str | Path, model, calibrator, baselines: dict[str, object], params: Params) -> HeldOutScores:
    """Score the test split with the model and the fitted baselines."""
    id_columns = list(params.data.id_columns)
    if params.compute.engine == "dask" and is_partitioned(path):
        import dask

        parts = worker_parts(path)
        with dask_client() as client:
            shipped = client.scatter((model, calibrator, baselines), broadcast=True)
            try:
                frames = dask.compute(*[dask.delayed(_scores_of_file)(part, shipped, id_columns) for part in parts])
            except READ_ERRORS as error:
                raise unreadable_on_cluster(path, error) from None
        scores, table = pd.concat(frames, ignore_index=True), None
    else:
        table = read_table(path)
        scores = _scores_of(table, model, calibrator, baselines, id_columns, str(path))
    return HeldOutScores(
        y=scores[LABEL].to_numpy(np.int8), probability=scores[PROBABILITY].to_numpy(np.float64),
        raw=scores[RAW].to_numpy(np.float64), baselines={name: scores[name].to_numpy() for name in baselines},
        table=table)
