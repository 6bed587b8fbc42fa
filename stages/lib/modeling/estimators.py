"""The estimators the model stages share: either model family, the resampling pipeline, cross-validation rows.

`tune`, `calibrate` and `train` build their models here, so cross-validation,
out-of-fold predictions and the final fit use the same objects. Two families can
ship: LightGBM and a logistic regression (stages.lib.modeling.linear); `tune` chooses
(stages.lib.modeling.search) and writes the choice to models/best_params.json. The resampler
sits inside an imbalanced-learn Pipeline: it runs only while fitting, so in
cross-validation it sees each training fold and never a validation fold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline
from lightgbm import Booster, LGBMClassifier, early_stopping
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

from stages.lib.core.errors import ArtifactError, DataError
from stages.lib.core.params import ModelParams, Params, ResampleParams
from stages.lib.data.sampling import sample_table
from stages.lib.data.schema import split_features
from stages.lib.engines.base import Engine
from stages.lib.modeling import resampling
from stages.lib.modeling.linear import logistic_regression
from stages.lib.modeling.linear import model_text as linear_model_text

LIGHTGBM, LOGISTIC_REGRESSION = "lightgbm", "logistic_regression"
FAMILIES = (LIGHTGBM, LOGISTIC_REGRESSION)


@dataclass(frozen=True)
class ChosenModel:
    """What `tune` chose: the family that ships and its tuned params (LightGBM's, or the logistic
    regression's C); models/best_params.json holds it."""

    family: str
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "params": self.params}

    @classmethod
    def from_json(cls, content: Any, source: str) -> ChosenModel:
        if not isinstance(content, dict) or content.get("family") not in FAMILIES \
                or not isinstance(content.get("params"), dict):
            raise ArtifactError(f"{source}: not a model choice written by tune (expected a family, one of "
                                f"{', '.join(FAMILIES)}, and its params); run `dvc repro tune`")
        return cls(content["family"], content["params"])


def training_rows(engine: Engine, path: str | Path, params: Params,
                  rows: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and labels of a processed split: every row, or a stratified sample of at most `rows`
    rows (stages.lib.data.sampling.sample_table), chosen where the engine keeps the split."""
    table = sample_table(engine, path, rows, params.base.seed)
    return split_features(table, params.data.id_columns, str(path))


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
    resampling.check_minority_size(smallest, resample, f"{where}, the smallest of {folds.n_splits} training folds")


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
    resampling.check_minority_size(smallest - held_out, resample,
                        f"{where}, the smallest training fold less its early-stopping rows")


def make_classifier(model: ModelParams, resample: ResampleParams, seed: int, threads: int,
                    tuned: dict[str, Any] | None = None) -> LGBMClassifier:
    """LightGBM with the fixed params, the tuned ones, and determinism switched on; `threads` inside the
    fit (Engine.fit_threads)."""
    settings: dict[str, Any] = {
        "n_estimators": model.n_estimators,
        # Always explicit: LightGBM ignores OMP_NUM_THREADS.
        "n_jobs": threads,
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


def make_early_stopping_pipeline(model: ModelParams, resample: ResampleParams, seed: int, threads: int,
                                 rounds: int, scoring: str) -> Pipeline:
    """The tuning pipeline with early stopping: the classifier resamples its own rows."""
    classifier = make_classifier(model, resample, seed, threads)
    return Pipeline([
        ("resample", "passthrough"),
        ("model", EarlyStoppingClassifier(
            early_stopping_rounds=rounds, stopping_metric=EARLY_STOPPING_METRICS.get(scoring, "binary_logloss"),
            resample_method=resample.method, k_neighbors=resample.k_neighbors,
            sampling_strategy=resample.sampling_strategy, **classifier.get_params())),
    ])


def make_logistic_regression(features: pd.DataFrame, resample: ResampleParams,
                             tuned: dict[str, Any] | None = None):
    """The logistic regression for tables with `features`' columns; tuned: {"C": ...}."""
    return logistic_regression(features, balanced=resample.method == "class_weight", **(tuned or {}))


def make_pipeline(model: ModelParams, resample: ResampleParams, seed: int, threads: int,
                  tuned: dict[str, Any] | None = None, family: str = LIGHTGBM,
                  features: pd.DataFrame | None = None) -> Pipeline:
    """Resampler (or passthrough) followed by the family's model; tuned keys are model params.
    The logistic regression needs the `features` it will see (their columns and categories)."""
    sampler = resampling.make_resampler(resample, seed)
    estimator = (make_logistic_regression(features, resample, tuned) if family == LOGISTIC_REGRESSION
                 else make_classifier(model, resample, seed, threads, tuned))
    return Pipeline([
        ("resample", sampler if sampler is not None else "passthrough"),
        ("model", estimator),
    ])


def out_of_fold_scores(engine: Engine, features: pd.DataFrame, y: np.ndarray, params: Params,
                       best_params: dict, family: str = LIGHTGBM) -> np.ndarray:
    """Every row's score from a model fitted (and resampled) on the other folds; the folds fit side by side."""
    folds = StratifiedKFold(n_splits=params.calibration.cv_folds, shuffle=True, random_state=params.base.seed)
    check_fold_sizes(y, folds, params.resample, "calibration.cv_folds", "calibration rows")
    pipeline = make_pipeline(params.model, params.resample, params.base.seed,
                             engine.fit_threads(params.model, folds.n_splits), best_params, family, features)
    with engine.parallel(folds.n_splits) as n_jobs:
        return cross_val_predict(pipeline, features, y, cv=folds, method="predict_proba", n_jobs=n_jobs)[:, 1]


def train_model(engine: Engine, path: str | Path, params: Params, best_params: dict,
                family: str = LIGHTGBM) -> tuple[Any, int]:
    """The final model on every row of the (resampled) training table with the tuned params; returns it,
    as the same bytes on any machine, and the rows.

    LightGBM is fitted where the engine says (Engine.fit: on a Dask cluster, data-parallel on the
    workers). The logistic regression is one Newton solve over a few dozen columns: it is fitted in
    this process, on the table gathered from wherever the engine keeps it.
    """
    if family == LOGISTIC_REGRESSION:
        features, y = split_features(engine.gather(path), params.data.id_columns, str(path))
        return make_logistic_regression(features, params.resample, best_params).fit(features, y), len(y)
    classifier = make_classifier(params.model, params.resample, params.base.seed,
                                 engine.fit_threads(params.model, 1), best_params)
    model, rows = engine.fit(classifier, path, params.data.id_columns)
    return without_machine(model), rows


def model_text(model) -> str:
    """models/model.txt: LightGBM's own text model, or the logistic regression's coefficient table."""
    if isinstance(model, LGBMClassifier):
        return model.booster_.model_to_string()
    return linear_model_text(model)


# What a fitted LightGBM records of the machine it ran on, not of what it learned: its threads, and the
# network of a distributed fit (random ports). model.txt and model.joblib would differ between machines.
MACHINE_PARAMS = ("num_threads", "machines", "local_listen_port")
_MACHINE_LINES = tuple(f"[{name}: " for name in MACHINE_PARAMS)


def without_machine(model: LGBMClassifier) -> LGBMClassifier:
    """`model` without MACHINE_PARAMS; it predicts with every core (prediction does not depend on threads)."""
    text = model.booster_.model_to_string()
    model._Booster = Booster(model_str="\n".join(line for line in text.split("\n")
                                                  if not line.startswith(_MACHINE_LINES)))
    model.set_params(n_jobs=None)
    for name in MACHINE_PARAMS:
        vars(model).pop(name, None)
        model._other_params.pop(name, None)
    # A distributed fit's to_local() sets attributes in the order of a set of names, which changes with
    # Python's string hashing from process to process; pickled in that order, model.joblib would too.
    model.__dict__ = dict(sorted(vars(model).items()))
    return model
