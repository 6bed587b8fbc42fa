"""Choosing the model that ships: LightGBM tuned by BayesSearchCV, a logistic regression, or the better of both.

- LightGBM: scikit-optimize's BayesSearchCV over tune.search_space (stages.lib.modeling.search).
- The logistic regression: its strength C by a grid search on the same folds.
- model.family auto: both, tuned, compared on fresh folds (`compare_families`):
  the best of many cross-validated scores is biased upward, so the search's own
  scores cannot say whether the tuned LightGBM beats a simpler model. The logistic
  regression ships unless LightGBM wins there by more than one standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV

from stages.lib.core.errors import DataError
from stages.lib.core.params_model import TuneParams
from stages.lib.core.params_types import AUTO
from stages.lib.engines.base import Engine
from stages.lib.evaluation.comparison import Comparison
from stages.lib.modeling.estimators import LIGHTGBM, LOGISTIC_REGRESSION, ChosenModel, Recipe
from stages.lib.modeling.folds import Timeline, smallest_training_buyers, stratified_splits, time_splits
from stages.lib.modeling.progress import TuningProgress
from stages.lib.modeling.resampling import check_minority_size
from stages.lib.modeling.search import TuneResult, tune_hyperparameters, tuning_splits

# The logistic regression's C (inverse penalty strength) is the best of these on the search's folds;
# on a tie, the smaller (the simpler model).
LOGISTIC_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
# model.family auto compares the tuned families on these fresh folds, paired fold by fold.
COMPARISON_FOLDS, COMPARISON_REPEATS = 5, 2


@dataclass(frozen=True)
class LinearResult:
    C: float
    best_score: float
    scores: dict[float, float]  # C: cross-validated score


def tune_logistic_regression(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe,
                             tune: TuneParams, timeline: Timeline | None = None) -> LinearResult:
    """The logistic regression's C: a grid search on the LightGBM search's folds, resampling inside each."""
    folds = tuning_splits(y, tune, recipe, timeline)
    pipeline = recipe.pipeline(1, family=LOGISTIC_REGRESSION, features=features)
    fits = len(LOGISTIC_C_GRID) * len(folds)
    with engine.parallel(fits) as n_jobs:
        grid = GridSearchCV(pipeline, {"model__classifier__C": list(LOGISTIC_C_GRID)}, scoring=tune.scoring,
                            cv=folds, n_jobs=n_jobs, refit=False, error_score="raise").fit(features, y)
    scores = [float(score) for score in grid.cv_results_["mean_test_score"]]
    best = int(np.argmax(scores))
    return LinearResult(LOGISTIC_C_GRID[best], scores[best], dict(zip(LOGISTIC_C_GRID, scores)))


@dataclass(frozen=True)
class FamilyComparison:
    """Each family's score on the same folds, paired fold by fold."""

    lightgbm: list[float]
    logistic_regression: list[float]
    seed: int
    time_folds: int | None = None   # a dated table: the time-ordered folds (else COMPARISON_FOLDS x REPEATS)

    @property
    def difference(self) -> float:
        """LightGBM's mean score minus the logistic regression's."""
        return float(np.mean(np.subtract(self.lightgbm, self.logistic_regression)))

    @property
    def standard_error(self) -> float:
        """Of the mean paired difference (the folds taken as independent, as the rule's one standard error)."""
        differences = np.subtract(self.lightgbm, self.logistic_regression)
        return float(np.std(differences, ddof=1) / math.sqrt(len(differences)))

    @property
    def choice(self) -> str:
        """The logistic regression, unless LightGBM wins by more than one standard error."""
        return LIGHTGBM if self.difference > self.standard_error else LOGISTIC_REGRESSION

    def to_json(self) -> dict[str, Any]:
        folds = {"folds": COMPARISON_FOLDS, "repeats": COMPARISON_REPEATS} if self.time_folds is None else \
            {"folds": self.time_folds, "repeats": 1, "time_ordered": True}
        return {**folds, "seed": self.seed,
                "lightgbm": float(np.mean(self.lightgbm)),
                "logistic_regression": float(np.mean(self.logistic_regression)),
                "difference": self.difference, "standard_error": self.standard_error}


def comparison_seed(seed: int) -> int:
    """The comparison folds' seed: derived from base.seed, and not the search's folds."""
    return int(np.random.SeedSequence([seed, COMPARISON_FOLDS, COMPARISON_REPEATS]).generate_state(1)[0])


def _fold_score(pipeline, features: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                scoring: str) -> float:
    fitted = clone(pipeline).fit(features.iloc[train], y[train])
    return float(get_scorer(scoring)(fitted, features.iloc[test], y[test]))


def compare_families(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe, scoring: str,
                     lightgbm_params: dict[str, Any], linear_params: dict[str, Any],
                     timeline: Timeline | None = None) -> FamilyComparison:
    """Both tuned families scored with `scoring` (tune.scoring) on the same folds, resampled inside each training
    fold, the fits side by side: fresh repeated stratified folds, or for a dated table one time-ordered fold
    per date that can be validated (an expanding window; these overlap the search's validation dates, so
    the comparison is not fresh there: docs/metrics.md, "Which model ships")."""
    seed = comparison_seed(recipe.seed)
    buyers = min(int(np.sum(y == 1)), int(np.sum(y == 0)))
    if buyers < COMPARISON_FOLDS:
        raise DataError(f"tuning rows: {buyers} buyer rows cannot fill the {COMPARISON_FOLDS} folds on which "
                        "model.family auto compares the families; set model.family to lightgbm or "
                        "logistic_regression, or use more data")
    if timeline is None:
        splits = stratified_splits(y, COMPARISON_FOLDS, seed, COMPARISON_REPEATS)
    else:
        splits = time_splits(y, timeline, None, "model.family auto's comparison", "tuning rows")
        if len(splits) < 2:
            raise DataError("tuning rows: model.family auto compares the families on one time-ordered fold per "
                            "validated snapshot date and needs two; set model.family to lightgbm or "
                            "logistic_regression, or export more snapshots")
    check_minority_size(smallest_training_buyers(y, splits), recipe.resample,
                        f"tuning rows, the smallest of the {COMPARISON_FOLDS} comparison training folds")
    fits = 2 * len(splits)
    pipelines = [recipe.pipeline(recipe.fit_threads(engine, fits), lightgbm_params),
                 recipe.pipeline(1, linear_params, LOGISTIC_REGRESSION, features)]
    with engine.parallel(fits) as n_jobs:
        scores = Parallel(n_jobs=n_jobs)(delayed(_fold_score)(pipeline, features, y, train, test, scoring)
                                         for pipeline in pipelines for train, test in splits)
    return FamilyComparison(scores[:len(splits)], scores[len(splits):], seed, len(splits) if timeline else None)


@dataclass(frozen=True)
class ModelChoice:
    """What tune decided, and what it measured on the way."""

    chosen: ChosenModel
    rows: int
    search: TuneResult | None             # LightGBM's search (model.family auto or lightgbm)
    linear: LinearResult | None           # the logistic regression's C (auto or logistic_regression)
    comparison: FamilyComparison | None   # auto only

    @property
    def trace(self) -> list[dict[str, Any]]:
        """LightGBM's search, point by point; the logistic regression's grid when only it was tuned."""
        if self.search is not None:
            return self.search.trace
        best, trace = -np.inf, []
        for i, (C, score) in enumerate(self.linear.scores.items(), start=1):
            best = max(best, score)
            trace.append({"iteration": i, "score": score, "best_so_far": best, "C": C})
        return trace

    def summary(self, scoring: str) -> str:
        """One line for the user: which family ships, and why."""
        family = self.chosen.family.replace("_", " ")
        if self.comparison is None:
            score = self.search.best_score if self.search is not None else self.linear.best_score
            return (f"tune: {family} (model.family), best cross-validated {scoring} {score:.4f} "
                    f"on {self.rows:,} rows")
        comparison = self.comparison.to_json()
        folds = (f"{COMPARISON_FOLDS}x{COMPARISON_REPEATS} fresh folds" if self.comparison.time_folds is None
                 else f"{self.comparison.time_folds} time-ordered folds")
        measured = Comparison(comparison["difference"], comparison["standard_error"])
        return (f"tune: {family} ships: on {folds} {scoring} "
                f"LightGBM {comparison['lightgbm']:.4f}, logistic regression {comparison['logistic_regression']:.4f}: "
                f"{measured.of('LightGBM')} ({measured.evidence()}; LightGBM ships when it wins by more than one "
                f"standard error, {comparison['standard_error']:.4f}) on {self.rows:,} rows")


def choose_model(engine: Engine, features: pd.DataFrame, y: np.ndarray, recipe: Recipe, tune: TuneParams,
                 progress: TuningProgress | None = None, timeline: Timeline | None = None) -> ModelChoice:
    """Tune the families model.family allows and pick the one that ships (model.family auto: compare_families);
    with a `timeline`, on time-ordered folds."""
    family = recipe.model.family
    search = (tune_hyperparameters(engine, features, y, recipe, tune, progress, timeline)
              if family in (AUTO, LIGHTGBM) else None)
    linear = (tune_logistic_regression(engine, features, y, recipe, tune, timeline)
              if family in (AUTO, LOGISTIC_REGRESSION) else None)
    comparison = None
    if family == AUTO:
        comparison = compare_families(engine, features, y, recipe, tune.scoring, search.best_params, {"C": linear.C},
                                      timeline)
        family = comparison.choice
    chosen = (ChosenModel(LIGHTGBM, search.best_params) if family == LIGHTGBM
              else ChosenModel(LOGISTIC_REGRESSION, {"C": linear.C}))
    return ModelChoice(chosen, len(y), search, linear, comparison)
