"""Cross-validation folds, the checks that every fold can be fitted, and out-of-fold scores.

Every fold of the run comes from here: tune's search and the logistic regression's
grid, the family comparison's fresh folds, and calibrate's out-of-fold
predictions. A fold's rows are given as index arrays (`Splits`), so a search, a
comparison and the checks before them see exactly the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, cross_val_predict

from stages.lib.core.errors import DataError
from stages.lib.core.params_sections import ResampleParams
from stages.lib.engines.base import Engine
from stages.lib.modeling import resampling
from stages.lib.modeling.estimators import LIGHTGBM, Recipe

Splits = list[tuple[np.ndarray, np.ndarray]]  # (training rows, validation rows) of each fold


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


def smallest_training_buyers(y: np.ndarray, splits: Splits) -> int:
    """The buyers of the training fold that has the fewest."""
    return min(int(np.sum(y[train] == 1)) for train, _ in splits)


def checked_splits(y: np.ndarray, folds: int, seed: int, resample: ResampleParams, key: str, where: str,
                   repeats: int = 1) -> Splits:
    """`stratified_splits`, once every fold is known to hold a buyer and every training fold enough for the
    resampler; `key` is the param that sets `folds`, for the message."""
    check_fold_count(y, folds, key, where)
    splits = stratified_splits(y, folds, seed, repeats)
    folds_named = f"{folds} folds" if repeats == 1 else f"{folds}x{repeats} folds"
    resampling.check_minority_size(smallest_training_buyers(y, splits), resample,
                                   f"{where}, the smallest training fold of {folds_named}")
    return splits


def out_of_fold_scores(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe, folds: int,
                       tuned: dict, family: str = LIGHTGBM) -> np.ndarray:
    """Every row's score from a model fitted (and resampled) on the other folds; the folds fit side by side."""
    splits = checked_splits(y, folds, recipe.seed, recipe.resample, "calibration.cv_folds", "calibration rows")
    pipeline = recipe.pipeline(recipe.fit_threads(engine, len(splits)), tuned, family, features)
    with engine.parallel(len(splits)) as n_jobs:
        return cross_val_predict(pipeline, features, y, cv=splits, method="predict_proba", n_jobs=n_jobs)[:, 1]
