"""Early stopping while tuning: LightGBM that stops adding trees once a held-out slice of its own rows stops
improving (tune.early_stopping_rounds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline
from lightgbm import LGBMClassifier, early_stopping
from sklearn.model_selection import train_test_split

from stages.lib.core.errors import DataError
from stages.lib.core.params_model import ResampleParams
from stages.lib.modeling import resampling
from stages.lib.modeling.estimators import Recipe
from stages.lib.modeling.folds import Splits, smallest_training_buyers

# Share of an early-stopping fit's rows held out to decide when to stop.
EARLY_STOPPING_HOLDOUT = 0.1
# LightGBM's name for each tuning score it can follow tree by tree; the rest follow log loss.
EARLY_STOPPING_METRICS = {"average_precision": "average_precision", "roc_auc": "auc"}


class EarlyStoppingClassifier(LGBMClassifier):
    """LightGBM that stops adding trees once a held-out slice of its own rows stops improving.

    Used by `tune` only (tune.early_stopping_rounds). The slice, a stratified
    EARLY_STOPPING_HOLDOUT of the rows passed to fit, is cut before resampling,
    so it holds real customers only, and it comes out of the training fold, so
    the fold being scored is never seen. The rest is oversampled as the
    pipeline's resampler would, then trained on; prediction uses the best
    iteration. Same rows and params give the same trees.
    """

    def __init__(self, early_stopping_rounds: int = 30, stopping_metric: str = "binary_logloss",
                 resample_method: str = "none", k_neighbors: int = 5, sampling_strategy: float = 1.0,
                 **kwargs):
        self.early_stopping_rounds = early_stopping_rounds
        self.stopping_metric = stopping_metric
        self.resample_method = resample_method
        self.k_neighbors = k_neighbors
        self.sampling_strategy = sampling_strategy
        super().__init__(**kwargs)

    def fit(self, X: pd.DataFrame, y: np.ndarray, **fit_params) -> EarlyStoppingClassifier:
        y = np.asarray(y)
        fit_rows, held_out = train_test_split(np.arange(len(y)), test_size=EARLY_STOPPING_HOLDOUT, stratify=y,
                                              random_state=self.random_state)
        # Sorted: the rows keep their order, so the result does not depend on the split's shuffle.
        fit_rows, held_out = np.sort(fit_rows), np.sort(held_out)
        X_fit, y_fit = X.iloc[fit_rows], y[fit_rows]
        if self.resample_method in resampling.OVERSAMPLERS:
            X_fit, y_fit = resampling.oversample(X_fit, y_fit, self.resample_method, self.k_neighbors,
                                                  self.sampling_strategy, self.random_state)
        return super().fit(
            X_fit, y_fit, eval_X=(X.iloc[held_out],), eval_y=(y[held_out],), eval_metric=self.stopping_metric,
            callbacks=[early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)],
            **fit_params,
        )


def early_stopping_pipeline(recipe: Recipe, threads: int, rounds: int, scoring: str) -> Pipeline:
    """The tuning pipeline with early stopping: the classifier resamples its own rows."""
    classifier = recipe.classifier(threads)
    resample = recipe.resample
    return Pipeline([
        ("resample", "passthrough"),
        ("model", EarlyStoppingClassifier(
            early_stopping_rounds=rounds, stopping_metric=EARLY_STOPPING_METRICS.get(scoring, "binary_logloss"),
            resample_method=resample.method, k_neighbors=resample.k_neighbors,
            sampling_strategy=resample.sampling_strategy, **classifier.get_params())),
    ])


def check_early_stopping_rows(y: np.ndarray, splits: Splits, resample: ResampleParams, where: str) -> None:
    """Early stopping holds out EARLY_STOPPING_HOLDOUT of each training fold: both parts need buyers."""
    smallest = smallest_training_buyers(y, splits)
    held_out = math.ceil(smallest * EARLY_STOPPING_HOLDOUT)
    needed = math.ceil(1 / EARLY_STOPPING_HOLDOUT)
    if smallest < needed:
        raise DataError(
            f"{where}: the smallest training fold has {smallest} buyer rows, but tune.early_stopping_rounds "
            f"holds out {EARLY_STOPPING_HOLDOUT:.0%} of them and needs at least {needed}; "
            "set tune.early_stopping_rounds: null or use more data"
        )
    resampling.check_minority_size(smallest - held_out, resample,
                                   f"{where}, the smallest training fold less its early-stopping rows")
