"""tune: Bayesian search of LightGBM hyperparameters (scikit-optimize's BayesSearchCV).

Cross-validation runs on the processed training split, not the resampled one:
the resampler sits inside each fold (an imbalanced-learn Pipeline), so no
synthetic row reaches a validation fold. Tuning on the already-resampled table
leaks synthetic copies of validation buyers into training and inflates the
score. The test split is never read.

    python -m stages.tune --train data/processed/train.parquet \
        --best-params models/best_params.json --metrics metrics/tune.json \
        --trace metrics/plots/tune_trace.json
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from skopt import BayesSearchCV
from skopt.space import Categorical, Integer, Real

from stages.cli import run_stage, stage_parser
from stages.config import Params, TuneParams, load_params
from stages.modeling import (check_early_stopping_rows, check_fold_sizes, make_early_stopping_pipeline,
                             make_pipeline)
from stages.schema import split_features
from stages.tables import read_table, write_json

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


def stratified_sample(features: pd.DataFrame, y: np.ndarray, rows: int | None,
                      seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `rows` rows with the class ratio kept (all rows if rows is None or larger)."""
    if rows is None or rows >= len(y):
        return features, y
    keep, _ = train_test_split(np.arange(len(y)), train_size=rows, stratify=y, random_state=seed)
    keep = np.sort(keep)
    return features.iloc[keep], y[keep]


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class TuningProgress:
    """A skopt callback that keeps one status line on the terminal during the search.

    Iteration, best score so far, elapsed time and an estimate of the time left,
    rewritten in place after every iteration. Silent when the stream is not a
    terminal (CI, logs, `dvc repro > file`), so logs get no carriage returns.
    """

    def __init__(self, n_iter: int, scoring: str, stream: TextIO | None = None):
        self.n_iter, self.scoring = n_iter, scoring
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.shown = False

    def line(self, done: int, best: float, elapsed: float) -> str:
        left = elapsed / done * (self.n_iter - done) if done else 0.0
        return (f"tune: iteration {done}/{self.n_iter}, best {self.scoring} {best:.4f}, "
                f"elapsed {_clock(elapsed)}, ETA {_clock(left)}")

    def __call__(self, result: Any) -> bool:
        if self.enabled:
            # skopt minimises, so it holds the negated cross-validated scores.
            done, best = len(result.func_vals), -float(np.min(result.func_vals))
            self.stream.write("\r" + self.line(done, best, time.monotonic() - self.started) + "\033[K")
            self.stream.flush()
            self.shown = True
        return False  # never stop the search early

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def tune_hyperparameters(features: pd.DataFrame, y: np.ndarray, params: Params,
                         progress: TuningProgress | None = None) -> TuneResult:
    """Run the search; return the best params (model keys, no prefix), score and trace."""
    tune, seed = params.tune, params.base.seed
    features, y = stratified_sample(features, y, tune.sample_rows, seed)
    folds = StratifiedKFold(n_splits=tune.cv_folds, shuffle=True, random_state=seed)
    check_fold_sizes(y, folds, params.resample, "tune.cv_folds", "tuning rows")
    if tune.early_stopping_rounds:
        check_early_stopping_rows(y, folds, params.resample, "tuning rows")
    # The n_jobs workers share model.threads, so folds and LightGBM threads never ask for more cores than that.
    worker_model = dataclasses.replace(params.model, threads=max(1, params.model.threads // tune.n_jobs))
    if tune.early_stopping_rounds:
        pipeline = make_early_stopping_pipeline(worker_model, params.resample, seed, tune.early_stopping_rounds,
                                                tune.scoring)
    else:
        pipeline = make_pipeline(worker_model, params.resample, seed)
    search = BayesSearchCV(
        pipeline,
        search_space(tune),
        n_iter=tune.n_iter,
        cv=folds,
        scoring=tune.scoring,
        n_jobs=tune.n_jobs,
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
        best_params["n_estimators"] = stopped_tree_count(pipeline, best_params, features, y, folds, tune.n_jobs)
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


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.tune")
    parser.add_argument("--train", required=True, help="processed training split (not resampled)")
    parser.add_argument("--best-params", required=True, help="output: best LightGBM params (JSON)")
    parser.add_argument("--metrics", required=True, help="output: best CV score and settings (JSON)")
    parser.add_argument("--trace", required=True, help="output: score per iteration (plot JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    features, y = split_features(read_table(args.train), params.data.id_columns)
    result = tune_hyperparameters(features, y, params, TuningProgress(params.tune.n_iter, params.tune.scoring))
    write_json(result.best_params, args.best_params)
    write_json({
        "best_cv_score": result.best_score,
        "scoring": params.tune.scoring,
        "n_iter": params.tune.n_iter,
        "cv_folds": params.tune.cv_folds,
        "early_stopping_rounds": params.tune.early_stopping_rounds,
        "rows": result.rows,
        "best_params": result.best_params,
    }, args.metrics)
    write_json(result.trace, args.trace)
    print(f"tune: best cross-validated {params.tune.scoring} {result.best_score:.4f} "
          f"after {params.tune.n_iter} iterations on {result.rows:,} rows")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
