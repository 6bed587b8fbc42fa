"""Choosing the model that ships: LightGBM tuned by BayesSearchCV, a logistic regression, or the better of both.

- LightGBM: scikit-optimize's BayesSearchCV over tune.search_space.
- The logistic regression: its strength C by a grid search on the same folds.
- model.family auto: both, tuned, compared on fresh folds (`compare_families`):
  the best of many cross-validated scores is biased upward, so the search's own
  scores cannot say whether the tuned LightGBM beats a simpler model. The logistic
  regression ships unless LightGBM wins there by more than one standard error.

Cross-validation runs on the processed training split, not the resampled one:
the resampler sits inside each fold (an imbalanced-learn Pipeline), so no
synthetic row reaches a validation fold. Tuning on the already-resampled table
leaks synthetic copies of validation buyers into training and inflates the
score. The test split plays no part.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold, cross_validate
from skopt import BayesSearchCV, Optimizer
from skopt.space import Categorical, Integer, Real
from skopt.utils import dimensions_aslist
from tqdm import tqdm

from stages.lib.core.errors import DataError
from stages.lib.core.exact import round_significant_digits
from stages.lib.core.params import AUTO, Params, TuneParams
from stages.lib.engines.base import Engine
from stages.lib.modeling.estimators import (
    LIGHTGBM,
    LOGISTIC_REGRESSION,
    ChosenModel,
    check_early_stopping_rows,
    check_fold_sizes,
    make_early_stopping_pipeline,
    make_pipeline,
)
from stages.lib.modeling.resampling import check_minority_size

MODEL_STEP = "model__"


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]
    best_score: float
    trace: list[dict[str, Any]]
    rows: int


def search_space(tune: TuneParams) -> dict[str, Any]:
    """params.yaml's search space as skopt dimensions keyed for the pipeline's model step."""
    space = {}
    for name, dim in tune.search_space.items():
        if dim.categories is not None:
            space[MODEL_STEP + name] = Categorical(list(dim.categories), name=name)
        elif dim.type == "integer":
            space[MODEL_STEP + name] = Integer(int(dim.low), int(dim.high), prior=dim.prior, name=name)
        else:
            space[MODEL_STEP + name] = Real(dim.low, dim.high, prior=dim.prior, name=name)
    return space


# Every point the search evaluates is rounded to this many significant digits
# (RoundingOptimizer). With acq_optimizer="sampling" (RoundingBayesSearchCV) a
# proposal is one of skopt's random candidates, whose log-uniform values (10**u)
# differ by 1 ulp between CPUs with and without AVX-512; 6 digits leave a margin
# of 10^10, are finer than any LightGBM hyperparameter needs, and are what
# LightGBM itself keeps in model.txt.
SIGNIFICANT_DIGITS = 6


def round_to_dimension(value: Any, dimension: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """`value` as the search evaluates and records it: the same on every CPU, inside the dimension.

    Real, log-uniform prior: `digits` significant digits of the value (the same
    relative step in every decade). Real, uniform prior: an absolute step of
    `digits` significant digits of the range (a range through zero gets no
    needlessly fine steps near zero). Both are Python's correctly rounded
    decimal rounding, then clipped to [low, high]. Integer and Categorical
    points are exact already: returned as Python values.
    """
    if isinstance(dimension, Categorical):
        return value.item() if hasattr(value, "item") else value
    if isinstance(dimension, Integer):
        return int(value)
    low, high = float(dimension.low), float(dimension.high)
    if dimension.prior == "log-uniform":
        rounded = round_significant_digits(value, digits)
    else:
        rounded = round(float(value), digits - 1 - math.floor(math.log10(high - low)))
    return min(max(rounded, low), high)


class RoundingOptimizer(Optimizer):
    """skopt's Optimizer whose every proposal is rounded (round_to_dimension) before it is returned.

    The rounded point is what is evaluated and told back, so the Gaussian process
    is fitted on rounded points only and the search continues from them. Random
    initial points are rounded too: skopt draws log-uniform values as 10**u, and
    numpy's float64 power differs in the last bit between CPUs. Batches
    (tune.n_points > 1) lie to a copy of the optimizer, a RoundingOptimizer too.
    """

    def round_point(self, point: Sequence[Any]) -> list[Any]:
        return [round_to_dimension(value, dimension) for value, dimension in zip(point, self.space.dimensions)]

    def _ask(self):
        return self.round_point(super()._ask())

    def copy(self, random_state=None):
        copied = super().copy(random_state=random_state)
        copied.__class__ = type(self)  # Optimizer.copy (scikit-optimize 0.10.2) builds a plain Optimizer
        return copied


class RoundingBayesSearchCV(BayesSearchCV):
    """BayesSearchCV driven by a RoundingOptimizer that minimises the acquisition by sampling.

    Rounding alone is not enough: the Gaussian process's kernel hyperparameters
    come out of L-BFGS about 1e-5 apart between OpenBLAS kernels, and skopt's
    default acquisition optimiser (L-BFGS from 5 starts) turns that into
    proposals 1e-4 apart or at another local minimum. With
    acq_optimizer="sampling" a proposal is the best of 10,000 candidates drawn
    from the search's own random state: the same candidates on every CPU (up to
    the rounding), and the same winner unless two are within 1e-5 of each other.
    """

    def _make_optimizer(self, params_space):
        # BayesSearchCV._make_optimizer (scikit-optimize 0.10.2) with the optimizer class changed.
        kwargs = self.optimizer_kwargs_.copy()
        kwargs.setdefault("acq_optimizer", "sampling")
        kwargs["dimensions"] = dimensions_aslist(params_space)
        optimizer = RoundingOptimizer(**kwargs)
        for i in range(len(optimizer.space.dimensions)):
            if optimizer.space.dimensions[i].name is None:
                optimizer.space.dimensions[i].name = list(sorted(params_space.keys()))[i]
        return optimizer


class TuningProgress:
    """A skopt callback that keeps a tqdm progress line on the terminal during the search.

    Iterations done, best score so far, elapsed time and an estimate of the time
    left. tqdm stays silent when the stream is not a terminal (CI, logs,
    `dvc repro > file`), so logs get no carriage returns.
    """

    def __init__(self, n_iter: int, scoring: str, stream: TextIO | None = None):
        self.scoring = scoring
        self.bar = tqdm(total=n_iter, desc="tune", unit="iteration", file=stream if stream is not None else sys.stderr,
                        disable=None, dynamic_ncols=True)

    def __call__(self, result: Any) -> bool:
        # skopt minimises, so it holds the negated cross-validated scores.
        best = -float(np.min(result.func_vals))
        self.bar.set_postfix_str(f"best {self.scoring} {best:.4f}", refresh=False)
        self.bar.update(len(result.func_vals) - self.bar.n)
        return False  # never stop the search early

    def close(self) -> None:
        self.bar.close()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def tune_hyperparameters(engine: Engine, features: pd.DataFrame, y: np.ndarray, params: Params,
                         progress: TuningProgress | None = None) -> TuneResult:
    """Run the search on the engine; return the best params (model keys, no prefix), score and trace.

    Each step's tune.n_points x tune.cv_folds fits run side by side on the engine's workers;
    how many at once follows the machine, what each fit is (its rows, params and threads) does not.
    """
    tune, seed = params.tune, params.base.seed
    folds = StratifiedKFold(n_splits=tune.cv_folds, shuffle=True, random_state=seed)
    check_fold_sizes(y, folds, params.resample, "tune.cv_folds", "tuning rows")
    if tune.early_stopping_rounds:
        check_early_stopping_rows(y, folds, params.resample, "tuning rows")
    fits = tune.n_points * tune.cv_folds  # a search step's fits, the batch that runs side by side
    threads = engine.fit_threads(params.model, fits)
    if tune.early_stopping_rounds:
        pipeline = make_early_stopping_pipeline(params.model, params.resample, seed, threads,
                                                tune.early_stopping_rounds, tune.scoring)
    else:
        pipeline = make_pipeline(params.model, params.resample, seed, threads)
    with engine.parallel(fits) as n_jobs:
        search = RoundingBayesSearchCV(
            pipeline,
            search_space(tune),
            n_iter=tune.n_iter,
            cv=folds,
            scoring=tune.scoring,
            n_jobs=n_jobs,
            n_points=tune.n_points,
            refit=False,
            random_state=seed,
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
                       folds: StratifiedKFold, n_jobs: int) -> int:
    """The trees the best candidate kept, averaged over the folds.

    Its score was earned with that many trees, so calibrate and train (which
    read n_estimators from best_params) fit the model that was scored, not
    model.n_estimators trees of a learning rate tuned to stop early.
    """
    pipeline = clone(pipeline).set_params(**{MODEL_STEP + k: v for k, v in best_params.items()})
    fitted = cross_validate(pipeline, features, y, cv=folds, n_jobs=n_jobs, return_estimator=True)["estimator"]
    stopped = [estimator.named_steps["model"].best_iteration_ for estimator in fitted]
    return max(1, int(round(float(np.mean(stopped)))))


# A best value this close to a bound (share of the range, in the prior's scale) sits on the edge.
EDGE_SHARE = 0.02
# Bounds LightGBM itself sets: a best value there is not an edge the user could widen.
LIGHTGBM_LIMITS = {"num_leaves": (2, None), "colsample_bytree": (None, 1.0), "subsample": (None, 1.0),
                   "feature_fraction": (None, 1.0), "bagging_fraction": (None, 1.0)}


def edges_hit(best_params: dict[str, Any], tune: TuneParams) -> dict[str, str]:
    """Search-space dimensions whose best value sits at their low or high end: {name: "low" | "high"}.

    The optimum may lie beyond such an edge; the search could not look there. An end
    that is LightGBM's own limit (2 leaves, a fraction of 1.0) is not one.
    """
    hit = {}
    for name, dim in tune.search_space.items():
        if dim.categories is not None or name not in best_params:
            continue
        value, low, high = float(best_params[name]), float(dim.low), float(dim.high)
        least, most = LIGHTGBM_LIMITS.get(name, (None, None))
        can_lower, can_raise = least is None or low > least, most is None or high < most
        if dim.prior == "log-uniform":
            value, low, high = np.log(value), np.log(low), np.log(high)
        margin = 0 if dim.type == "integer" else EDGE_SHARE * (high - low)
        if value <= low + margin and can_lower:
            hit[name] = "low"
        elif value >= high - margin and can_raise:
            hit[name] = "high"
    return hit


def edge_warning(hit: dict[str, str], best_params: dict[str, Any]) -> str | None:
    """One line for the user: which ranges to widen, or None."""
    if not hit:
        return None
    parts = [f"{name} {best_params[name]} at its {end} end (lower tune.search_space.{name}.low)" if end == "low"
             else f"{name} {best_params[name]} at its {end} end (raise tune.search_space.{name}.high)"
             for name, end in sorted(hit.items())]
    return ("warning: the best point of the search sits on the edge of its space, so the optimum may lie "
            "beyond it: " + "; ".join(parts))


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


def tune_logistic_regression(engine: Engine, features: pd.DataFrame, y: np.ndarray, params: Params) -> LinearResult:
    """The logistic regression's C: a grid search on the LightGBM search's folds, resampling inside each."""
    folds = StratifiedKFold(n_splits=params.tune.cv_folds, shuffle=True, random_state=params.base.seed)
    check_fold_sizes(y, folds, params.resample, "tune.cv_folds", "tuning rows")
    pipeline = make_pipeline(params.model, params.resample, params.base.seed, 1, family=LOGISTIC_REGRESSION,
                             features=features)
    fits = len(LOGISTIC_C_GRID) * folds.n_splits
    with engine.parallel(fits) as n_jobs:
        grid = GridSearchCV(pipeline, {"model__classifier__C": list(LOGISTIC_C_GRID)}, scoring=params.tune.scoring,
                            cv=folds, n_jobs=n_jobs, refit=False, error_score="raise").fit(features, y)
    scores = [float(score) for score in grid.cv_results_["mean_test_score"]]
    best = int(np.argmax(scores))
    return LinearResult(LOGISTIC_C_GRID[best], scores[best], dict(zip(LOGISTIC_C_GRID, scores)))


@dataclass(frozen=True)
class FamilyComparison:
    """Each family's score on the same fresh folds, paired fold by fold."""

    lightgbm: list[float]
    logistic_regression: list[float]
    seed: int

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
        return {"folds": COMPARISON_FOLDS, "repeats": COMPARISON_REPEATS, "seed": self.seed,
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


def compare_families(engine: Engine, features: pd.DataFrame, y: np.ndarray, params: Params,
                     lightgbm_params: dict[str, Any], linear_params: dict[str, Any]) -> FamilyComparison:
    """Both tuned families scored with tune.scoring on the same fresh repeated stratified folds (resampled inside
    each training fold); the fits run side by side."""
    seed = comparison_seed(params.base.seed)
    buyers = min(int(np.sum(y == 1)), int(np.sum(y == 0)))
    if buyers < COMPARISON_FOLDS:
        raise DataError(f"tuning rows: {buyers} buyer rows cannot fill the {COMPARISON_FOLDS} folds on which "
                        "model.family auto compares the families; set model.family to lightgbm or "
                        "logistic_regression, or use more data")
    splits = list(RepeatedStratifiedKFold(n_splits=COMPARISON_FOLDS, n_repeats=COMPARISON_REPEATS,
                                          random_state=seed).split(np.zeros(len(y)), y))
    check_minority_size(min(int(np.sum(y[train] == 1)) for train, _ in splits), params.resample,
                        f"tuning rows, the smallest of the {COMPARISON_FOLDS} comparison training folds")
    fits = 2 * len(splits)
    pipelines = [make_pipeline(params.model, params.resample, params.base.seed,
                               engine.fit_threads(params.model, fits), lightgbm_params),
                 make_pipeline(params.model, params.resample, params.base.seed, 1, linear_params,
                               LOGISTIC_REGRESSION, features)]
    with engine.parallel(fits) as n_jobs:
        scores = Parallel(n_jobs=n_jobs)(delayed(_fold_score)(pipeline, features, y, train, test, params.tune.scoring)
                                         for pipeline in pipelines for train, test in splits)
    return FamilyComparison(scores[:len(splits)], scores[len(splits):], seed)


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
        return (f"tune: {family} ships: on {COMPARISON_FOLDS}x{COMPARISON_REPEATS} fresh folds {scoring} "
                f"LightGBM {comparison['lightgbm']:.4f}, logistic regression {comparison['logistic_regression']:.4f}, "
                f"difference {comparison['difference']:+.4f} (standard error {comparison['standard_error']:.4f}; "
                f"LightGBM ships when it wins by more than one) on {self.rows:,} rows")


def choose_model(engine: Engine, features: pd.DataFrame, y: np.ndarray, params: Params,
                 progress: TuningProgress | None = None) -> ModelChoice:
    """Tune the families model.family allows and pick the one that ships (model.family auto: compare_families)."""
    family = params.model.family
    search = tune_hyperparameters(engine, features, y, params, progress) if family in (AUTO, LIGHTGBM) else None
    linear = tune_logistic_regression(engine, features, y, params) if family in (AUTO, LOGISTIC_REGRESSION) else None
    comparison = None
    if family == AUTO:
        comparison = compare_families(engine, features, y, params, search.best_params, {"C": linear.C})
        family = comparison.choice
    chosen = (ChosenModel(LIGHTGBM, search.best_params) if family == LIGHTGBM
              else ChosenModel(LOGISTIC_REGRESSION, {"C": linear.C}))
    return ModelChoice(chosen, len(y), search, linear, comparison)
