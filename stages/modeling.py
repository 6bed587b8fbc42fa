"""The estimators every model stage shares: resampler, LightGBM classifier, pipeline.

`tune`, `calibrate` and `train` build their models here, so cross-validation,
out-of-fold predictions and the final fit use the same objects. The resampler
sits inside an imbalanced-learn Pipeline: it runs only while fitting, so in
cross-validation it sees each training fold and never a validation fold.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
from imblearn.over_sampling import ADASYN, SMOTE, SMOTENC, BorderlineSMOTE
from imblearn.pipeline import Pipeline
from imblearn import FunctionSampler
from lightgbm import LGBMClassifier, early_stopping
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import NearestNeighbors

from stages.config import ModelParams, ResampleParams
from stages.errors import DataError

OVERSAMPLERS = {"smote": SMOTE, "smotenc": SMOTENC, "borderline_smote": BorderlineSMOTE, "adasyn": ADASYN}

# The benchmark (benchmarks/run.py) sets this to a file; every LightGBM fit and
# every oversampling then appends its duration there, one JSON line per call, from
# whichever process ran it (cross-validation workers too). Unset: nothing is wrapped.
PROFILE_ENV = "PROPENSITY_PROFILE"


def _timed(label: str, function: Callable) -> Callable:
    path = os.environ.get(PROFILE_ENV)
    if not path:
        return function

    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            record = {"event": label, "seconds": time.perf_counter() - start, "pid": os.getpid()}
            # One short append per call: lines from parallel workers do not interleave.
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    return timed


if os.environ.get(PROFILE_ENV) and not getattr(LGBMClassifier.fit, "__wrapped__", None):
    LGBMClassifier.fit = _timed("lightgbm_fit", LGBMClassifier.fit)


def categorical_columns_of(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]


def check_minority_size(minority: int, resample: ResampleParams, where: str) -> None:
    """SMOTE-family samplers need k_neighbors + 1 minority rows in every table they see."""
    if resample.method not in OVERSAMPLERS:
        return
    if minority < resample.k_neighbors + 1:
        raise DataError(
            f"{where}: {minority} buyer rows, but resample.k_neighbors={resample.k_neighbors} needs at least "
            f"{resample.k_neighbors + 1}; set resample.k_neighbors to at most {max(minority - 1, 1)} "
            "or use more data"
        )


def check_fold_sizes(y: np.ndarray, folds: StratifiedKFold, resample: ResampleParams, key: str,
                     where: str) -> None:
    """Before a cross-validation starts: every fold needs a buyer, every training fold enough for SMOTE."""
    buyers = int(np.sum(y == 1))
    if buyers < folds.n_splits:
        raise DataError(
            f"{where}: {buyers} buyer rows cannot fill {key}={folds.n_splits} folds; "
            f"set {key} to at most {max(buyers, 2)} or use more data"
        )
    smallest = min(int(np.sum(y[train] == 1)) for train, _ in folds.split(np.zeros(len(y)), y))
    check_minority_size(smallest, resample, f"{where}, the smallest of {folds.n_splits} training folds")


def check_early_stopping_rows(y: np.ndarray, folds: StratifiedKFold, resample: ResampleParams,
                              where: str) -> None:
    """Early stopping holds out EARLY_STOPPING_HOLDOUT of each training fold: both parts need buyers."""
    smallest = min(int(np.sum(y[train] == 1)) for train, _ in folds.split(np.zeros(len(y)), y))
    held_out = math.ceil(smallest * EARLY_STOPPING_HOLDOUT)
    needed = math.ceil(1 / EARLY_STOPPING_HOLDOUT)
    if smallest < needed:
        raise DataError(
            f"{where}: the smallest training fold has {smallest} buyer rows, but tune.early_stopping_rounds "
            f"holds out {EARLY_STOPPING_HOLDOUT:.0%} of them and needs at least {needed}; "
            "set tune.early_stopping_rounds: null or use more data"
        )
    check_minority_size(smallest - held_out, resample,
                        f"{where}, the smallest training fold less its early-stopping rows")


def _neighbours(k: int, method: str) -> NearestNeighbors:
    """The k nearest other rows (each row is its own nearest), found with a k-d tree.

    imbalanced-learn's default search is brute force for more than 15 columns: all
    pairs of buyers, so 10x the buyers took 37x the time (10 million customers:
    3 minutes). A k-d tree returns the same neighbours, ties in the same order, in
    about n log n (the resampled tables of every method are identical). SMOTENC
    searches one-hot (sparse) rows, where no tree applies.
    """
    return NearestNeighbors(n_neighbors=k + 1, algorithm="auto" if method == "smotenc" else "kd_tree")


def oversample(features: pd.DataFrame, y: np.ndarray, method: str, k_neighbors: int,
               sampling_strategy: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Oversample the buyers; original rows come first, synthetic rows after them.

    Categorical columns are resampled as codes: SMOTENC draws them from the
    neighbours; the other methods interpolate, so their codes are rounded back
    to a level that exists.
    """
    categorical = categorical_columns_of(features)
    numeric = [c for c in features.columns if c not in set(categorical)]
    matrix = np.empty((len(features), features.shape[1]), dtype=np.float64)
    for i, column in enumerate(features.columns):
        series = features[column]
        matrix[:, i] = series.cat.codes if column in categorical else series.to_numpy(np.float64)
    sampler_cls = OVERSAMPLERS[method]
    options: dict[str, Any] = {"random_state": seed, "sampling_strategy": sampling_strategy}
    if method == "adasyn":
        options["n_neighbors"] = _neighbours(k_neighbors, method)
    else:
        options["k_neighbors"] = _neighbours(k_neighbors, method)
    if method == "borderline_smote":
        options["m_neighbors"] = _neighbours(BorderlineSMOTE().m_neighbors, method)
    if method == "smotenc":
        if not categorical or not numeric:
            raise DataError(
                "resample.method smotenc needs both categorical and numeric columns; "
                "use resample.method: smote"
            )
        options["categorical_features"] = [features.columns.get_loc(c) for c in categorical]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            resampled, y_resampled = sampler_cls(**options).fit_resample(matrix, y)
        except ValueError as error:
            raise DataError(f"resample.method {method} failed: {str(error).splitlines()[0]}; "
                            "try resample.method: smote or a lower resample.sampling_strategy") from None
    out = {}
    for i, column in enumerate(features.columns):
        values = resampled[:, i]
        if column in categorical:
            levels = features[column].cat.categories
            codes = np.clip(np.rint(values), 0, len(levels) - 1).astype(np.int32)
            out[column] = pd.Categorical.from_codes(codes, categories=levels)
        else:
            out[column] = values.astype(features[column].dtype)
    return pd.DataFrame(out), np.asarray(y_resampled, dtype=np.int8)


# Rebound under its own name so pickles of the resampler (cross-validation
# workers) still find `stages.modeling.oversample`.
oversample = _timed("oversample", oversample)


def make_resampler(resample: ResampleParams, seed: int) -> FunctionSampler | None:
    """The resampler for an imbalanced-learn Pipeline; None when nothing is resampled."""
    if resample.method not in OVERSAMPLERS:
        return None
    return FunctionSampler(
        func=oversample,
        validate=False,
        kw_args={"method": resample.method, "k_neighbors": resample.k_neighbors,
                 "sampling_strategy": resample.sampling_strategy, "seed": seed},
    )


def make_classifier(model: ModelParams, resample: ResampleParams, seed: int,
                    tuned: dict[str, Any] | None = None) -> LGBMClassifier:
    """LightGBM with the fixed params, the tuned ones, and determinism switched on."""
    settings: dict[str, Any] = {
        "n_estimators": model.n_estimators,
        "n_jobs": model.threads,
        "random_state": seed,
        # Same data, params and thread count give the same trees, bit for bit.
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }
    if resample.method == "class_weight":
        settings["is_unbalance"] = True
    settings.update(tuned or {})
    return LGBMClassifier(**settings)


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

    def fit(self, X: pd.DataFrame, y: np.ndarray, **fit_params) -> "EarlyStoppingClassifier":
        y = np.asarray(y)
        fit_rows, held_out = train_test_split(np.arange(len(y)), test_size=EARLY_STOPPING_HOLDOUT, stratify=y,
                                              random_state=self.random_state)
        # Sorted: the rows keep their order, so the result does not depend on the split's shuffle.
        fit_rows, held_out = np.sort(fit_rows), np.sort(held_out)
        X_fit, y_fit = X.iloc[fit_rows], y[fit_rows]
        if self.resample_method in OVERSAMPLERS:
            X_fit, y_fit = oversample(X_fit, y_fit, self.resample_method, self.k_neighbors,
                                      self.sampling_strategy, self.random_state)
        return super().fit(
            X_fit, y_fit, eval_X=(X.iloc[held_out],), eval_y=(y[held_out],), eval_metric=self.stopping_metric,
            callbacks=[early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)],
            **fit_params,
        )


def make_early_stopping_pipeline(model: ModelParams, resample: ResampleParams, seed: int, rounds: int,
                                 scoring: str) -> Pipeline:
    """The tuning pipeline with early stopping: the classifier resamples its own rows."""
    classifier = make_classifier(model, resample, seed)
    return Pipeline([
        ("resample", "passthrough"),
        ("model", EarlyStoppingClassifier(
            early_stopping_rounds=rounds, stopping_metric=EARLY_STOPPING_METRICS.get(scoring, "binary_logloss"),
            resample_method=resample.method, k_neighbors=resample.k_neighbors,
            sampling_strategy=resample.sampling_strategy, **classifier.get_params())),
    ])


def make_pipeline(model: ModelParams, resample: ResampleParams, seed: int,
                  tuned: dict[str, Any] | None = None) -> Pipeline:
    """Resampler (or passthrough) followed by LightGBM; tuned keys are model params."""
    sampler = make_resampler(resample, seed)
    return Pipeline([
        ("resample", sampler if sampler is not None else "passthrough"),
        ("model", make_classifier(model, resample, seed, tuned)),
    ])
