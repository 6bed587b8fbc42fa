"""Tuning LightGBM: scikit-optimize's BayesSearchCV over tune.search_space, the same on every CPU.

Cross-validation runs on the processed training split, not the resampled one:
the resampler sits inside each fold (an imbalanced-learn Pipeline), so no
synthetic row reaches a validation fold. Tuning on the already-resampled table
leaks synthetic copies of validation buyers into training and inflates the
score. The test split plays no part.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import cross_validate
from skopt.space import Categorical, Integer, Real

from stages.lib.core.params_model import TuneParams
from stages.lib.engines.base import Engine
from stages.lib.modeling.early_stopping import check_early_stopping_rows, early_stopping_pipeline
from stages.lib.modeling.estimators import Recipe
from stages.lib.modeling.folds import Splits, Timeline, checked_splits
from stages.lib.modeling.progress import TuningProgress
from stages.lib.modeling.rounding import RoundingBayesSearchCV

MODEL_STEP = "model__"


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]
    best_score: float
    trace: list[dict[str, Any]]
    rows: int


def search_space(tune: TuneParams, rows: int) -> dict[str, Any]:
    """params.yaml's search space on `rows` tuning rows as skopt dimensions keyed for the pipeline's model step."""
    space = {}
    for name, dim in tune.space_searched(rows).items():
        if dim.categories is not None:
            space[MODEL_STEP + name] = Categorical(list(dim.categories), name=name)
        elif dim.type == "integer":
            space[MODEL_STEP + name] = Integer(int(dim.low), int(dim.high), prior=dim.prior, name=name)
        else:
            space[MODEL_STEP + name] = Real(dim.low, dim.high, prior=dim.prior, name=name)
    return space


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def tuning_splits(y: np.ndarray, tune: TuneParams, recipe: Recipe, timeline: Timeline | None = None) -> Splits:
    """The folds of LightGBM's search and the logistic regression's grid (tune.cv_folds; in time order for a
    dated table)."""
    return checked_splits(y, tune.cv_folds, recipe.seed, recipe.resample, "tune.cv_folds", "tuning rows", timeline)


def tune_hyperparameters(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe, tune: TuneParams,
                         progress: TuningProgress | None = None, timeline: Timeline | None = None) -> TuneResult:
    """Run the search on the engine; return the best params (model keys, no prefix), score and trace.

    Each step's tune.n_points x tune.cv_folds fits run side by side on the engine's workers;
    how many at once follows the machine, what each fit is (its rows, params and threads) does not.
    """
    folds = tuning_splits(y, tune, recipe, timeline)
    if tune.early_stopping_rounds:
        check_early_stopping_rows(y, folds, recipe.resample, "tuning rows")
    fits = tune.n_points * tune.cv_folds  # a search step's fits, the batch that runs side by side
    threads = recipe.fit_threads(engine, fits)
    if tune.early_stopping_rounds:
        pipeline = early_stopping_pipeline(recipe, threads, tune.early_stopping_rounds, tune.scoring)
    else:
        pipeline = recipe.pipeline(threads)
    with engine.parallel(fits) as n_jobs:
        search = RoundingBayesSearchCV(
            pipeline,
            search_space(tune, len(y)),
            n_iter=tune.n_iter,
            cv=folds,
            scoring=tune.scoring,
            n_jobs=n_jobs,
            n_points=tune.n_points,
            refit=False,
            random_state=recipe.seed,
            return_train_score=False,
            error_score="raise",
        )
        with warnings.catch_warnings():
            # skopt warns when it proposes a point twice; the search goes on correctly.
            warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
            try:
                search.fit(features, y, callback=progress)
            finally:
                if progress is not None:
                    progress.close()
        scores = np.asarray(search.cv_results_["mean_test_score"], dtype=float)
        trace, best = [], -np.inf
        for i, (score, candidate) in enumerate(zip(scores, search.cv_results_["params"]), start=1):
            best = max(best, score)
            trace.append({"iteration": i, "score": float(score), "best_so_far": float(best),
                          **{k.removeprefix(MODEL_STEP): _plain(v) for k, v in candidate.items()}})
        best_index = int(np.argmax(scores))
        best_params = {k.removeprefix(MODEL_STEP): _plain(v)
                       for k, v in sorted(search.cv_results_["params"][best_index].items())}
        if tune.early_stopping_rounds:
            best_params["n_estimators"] = stopped_tree_count(pipeline, best_params, features, y, folds, n_jobs)
    return TuneResult(best_params, float(scores[best_index]), trace, len(y))


def stopped_tree_count(pipeline, best_params: dict[str, Any], features: pd.DataFrame, y: np.ndarray,
                       folds: Splits, n_jobs: int) -> int:
    """The trees the best candidate kept, averaged over the folds.

    Its score was earned with that many trees, so calibrate and train (which
    read n_estimators from best_params) fit the model that was scored, not
    model.n_estimators trees of a learning rate tuned to stop early.
    """
    pipeline = clone(pipeline).set_params(**{MODEL_STEP + k: v for k, v in best_params.items()})
    fitted = cross_validate(pipeline, features, y, cv=folds, n_jobs=n_jobs, return_estimator=True)["estimator"]
    stopped = [estimator.named_steps["model"].best_iteration_ for estimator in fitted]
    return max(1, int(round(float(np.mean(stopped)))))
