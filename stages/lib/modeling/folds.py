"""Cross-validation folds, the checks that every fold can be fitted, and out-of-fold scores.

Every fold of the run comes from here: tune's search and the logistic regression's
grid, the family comparison's fresh folds, and calibrate's out-of-fold
predictions. A fold's rows are given as index arrays (`Splits`), so a search, a
comparison and the checks before them see exactly the same rows.

Without dates the folds are stratified and shuffled by the seed. With a
`Timeline` (a dated table) they are in time order: scikit-learn's TimeSeriesSplit
over the distinct snapshot dates, an expanding window, so every fold validates on
dates later than all of its training rows (and data.gap_periods dates later
still). Rows of the first dates are then never validated: out-of-fold scores
cover the validated rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, TimeSeriesSplit

from stages.lib.core.errors import DataError
from stages.lib.core.params_model import ResampleParams
from stages.lib.data.dates import date_label
from stages.lib.engines.base import Engine
from stages.lib.modeling import resampling
from stages.lib.modeling.estimators import LIGHTGBM, Recipe

Splits = list[tuple[np.ndarray, np.ndarray]]  # (training rows, validation rows) of each fold


@dataclass(frozen=True)
class Timeline:
    """A dated table's rows in time: each row's snapshot date, and the dates left out between the rows a fold
    trains on and those it validates on (data.gap_periods)."""

    dates: np.ndarray
    gap: int = 0


def check_fold_count(y: np.ndarray, folds: int, key: str, where: str) -> None:
    """Before any fold is cut: every fold needs a buyer."""
    buyers = int(np.sum(y == 1))
    if buyers < folds:
        raise DataError(f"{where}: {buyers} buyer rows cannot fill {key}={folds} folds; "
                        f"set {key} to at most {max(buyers, 2)} or use more data")


def stratified_splits(y: np.ndarray, folds: int, seed: int, repeats: int = 1) -> Splits:
    """Stratified folds of the rows (shuffled by `seed`), `repeats` times over."""
    cutter = (StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed) if repeats == 1
              else RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed))
    return list(cutter.split(np.zeros(len(y)), y))


def time_splits(y: np.ndarray, timeline: Timeline, folds: int | None, key: str, where: str) -> Splits:
    """Time-ordered folds: TimeSeriesSplit over the distinct dates (None folds: one per date that can be
    validated, each on one date), mapped to the rows; every validation fold holds buyers and non-buyers."""
    dates = np.unique(timeline.dates)
    keys = np.asarray(timeline.dates)
    if folds is None:
        folds, size = len(dates) - 1 - timeline.gap, 1
    else:
        size = len(dates) // (folds + 1)
    if folds < 1 or size < 1 or len(dates) - folds * size - timeline.gap < 1:
        need = (folds or 1) + 1 + timeline.gap
        raise DataError(f"{where}: {len(dates)} snapshot dates cannot make {key}={folds} folds that each validate "
                        f"on dates later than they train on (with data.gap_periods={timeline.gap} it needs at least "
                        f"{need}); lower {key}, or export more snapshots")
    splits = []
    for train, validate in TimeSeriesSplit(n_splits=folds, gap=timeline.gap, test_size=size).split(dates):
        rows = np.flatnonzero(np.isin(keys, dates[validate]))
        if len(np.unique(y[rows])) < 2:
            raise DataError(f"{where}: the fold validating on {date_label(dates[validate][0])} holds "
                            f"{'no buyer' if not y[rows].any() else 'only buyers'}; lower {key}, or export more "
                            "snapshots")
        splits.append((np.flatnonzero(np.isin(keys, dates[train])), rows))
    return splits


def smallest_training_buyers(y: np.ndarray, splits: Splits) -> int:
    """The buyers of the training fold that has the fewest."""
    return min(int(np.sum(y[train] == 1)) for train, _ in splits)


def checked_splits(y: np.ndarray, folds: int, seed: int, resample: ResampleParams, key: str, where: str,
                   timeline: Timeline | None = None) -> Splits:
    """The folds (`stratified_splits`, or `time_splits` for a dated table), once every fold is known to hold a
    buyer and every training fold enough for the resampler; `key` is the param that sets `folds`."""
    check_fold_count(y, folds, key, where)
    splits = stratified_splits(y, folds, seed) if timeline is None else time_splits(y, timeline, folds, key, where)
    resampling.check_minority_size(smallest_training_buyers(y, splits), resample,
                                   f"{where}, the smallest training fold of {folds} folds")
    return splits


def _fold_scores(pipeline, features: pd.DataFrame, y: np.ndarray, train: np.ndarray,
                 validate: np.ndarray) -> np.ndarray:
    return clone(pipeline).fit(features.iloc[train], y[train]).predict_proba(features.iloc[validate])[:, 1]


def out_of_fold_scores(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe, folds: int,
                       tuned: dict, family: str = LIGHTGBM, timeline: Timeline | None = None) -> np.ndarray:
    """Every row's score from a model fitted (and resampled) on other rows only, NaN for a row no fold validates
    (a dated table's first dates); the folds fit side by side."""
    splits = checked_splits(y, folds, recipe.seed, recipe.resample, "calibration.cv_folds", "calibration rows",
                            timeline)
    pipeline = recipe.pipeline(recipe.fit_threads(engine, len(splits)), tuned, family, features)
    with engine.parallel(len(splits)) as n_jobs:
        scored = Parallel(n_jobs=n_jobs)(delayed(_fold_scores)(pipeline, features, y, train, validate)
                                         for train, validate in splits)
    scores = np.full(len(y), np.nan)
    for (_, validate), fold in zip(splits, scored):
        scores[validate] = fold
    return scores
