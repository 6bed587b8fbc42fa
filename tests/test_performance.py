"""The performance switches: tuning progress line, core split params, early stopping, SMOTE's neighbour search."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError, ParamsError
from stages.lib.core.params import parse_params
from stages.lib.modeling.search import TuningProgress, tune_hyperparameters


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeResult:
    def __init__(self, scores: list[float]):
        self.func_vals = np.array([-s for s in scores])


def test_progress_is_silent_when_stderr_is_not_a_terminal():
    stream = io.StringIO()
    progress = TuningProgress(12, "average_precision", stream)
    progress(FakeResult([0.3]))
    progress.close()
    assert stream.getvalue() == ""


def test_progress_shows_iterations_done_and_the_best_score_on_a_terminal():
    stream = Terminal()
    progress = TuningProgress(4, "average_precision", stream)
    progress(FakeResult([0.30]))
    progress(FakeResult([0.30, 0.42]))
    progress.close()
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert "2/4" in last and "best average_precision 0.4200" in last, stream.getvalue()


def test_tuning_reports_each_step_to_the_progress_callback(engine, params_with, train_xy):
    features, y = train_xy
    stream = Terminal()
    result = tune_hyperparameters(engine, features, y, params_with(tune__n_points=2),
                                  TuningProgress(2, "average_precision", stream))
    # n_points=2 proposes both candidates in one step: one update, after both were scored.
    assert "2/2" in stream.getvalue() and "1/2" not in stream.getvalue()
    assert len(result.trace) == 2


def test_n_points_must_be_positive(raw_params):
    raw = raw_params
    raw["tune"]["n_points"] = 0
    with pytest.raises(ParamsError, match="tune.n_points"):
        parse_params(raw)


def test_early_stopping_keeps_fewer_trees_and_hands_the_count_to_train(engine, params_with, train_xy):
    features, y = train_xy
    params = params_with(tune__early_stopping_rounds=5, model__n_estimators=200)
    first = tune_hyperparameters(engine, features, y, params)
    second = tune_hyperparameters(engine, features, y, params)
    assert first == second  # deterministic: same rows and params, same search and tree count
    assert 1 <= first.best_params["n_estimators"] < 200


def test_early_stopping_classifier_trains_on_resampled_rows_and_stops_on_real_ones(train_xy, monkeypatch):
    import lightgbm

    from stages.lib.modeling.estimators import EarlyStoppingClassifier

    features, y = train_xy
    seen = {}
    original_fit = lightgbm.LGBMClassifier.fit

    def spy(self, X, y, **kwargs):
        seen.update(X=X, y=np.asarray(y), eval_X=kwargs["eval_X"][0], eval_y=kwargs["eval_y"][0])
        return original_fit(self, X, y, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMClassifier, "fit", spy)
    model = EarlyStoppingClassifier(early_stopping_rounds=5, stopping_metric="average_precision",
                                    resample_method="smote", sampling_strategy=0.5, n_estimators=300,
                                    n_jobs=1, random_state=1, verbose=-1).fit(features, y)
    assert model.best_iteration_ < 300
    assert len(model.evals_result_["valid_0"]["average_precision"]) == model.best_iteration_ + 5
    # The stopping slice is 10 % of the real rows given, both classes, none of them resampled.
    held_out = seen["eval_X"]
    assert len(held_out) == pytest.approx(0.1 * len(y), abs=1) and set(seen["eval_y"]) == {0, 1}
    assert held_out.index.isin(features.index).all()
    pd.testing.assert_frame_equal(held_out, features.loc[held_out.index])
    # The other 90 % were oversampled to half as many buyers as non-buyers.
    fitted_non_buyers = int((seen["y"] == 0).sum())
    assert fitted_non_buyers == int((y == 0).sum()) - int((seen["eval_y"] == 0).sum())
    assert int(seen["y"].sum()) == fitted_non_buyers // 2


@pytest.mark.parametrize("buyers, method, phrase", [
    # 2 folds (conftest): 6 buyers per training fold, too few to hold out 10 %.
    (12, "none", "holds out 10% of them and needs at least 10"),
    # 10 buyers per training fold are enough for SMOTE with k_neighbors 9, but not the 9 left after holding out 1.
    (20, "smote", "less its early-stopping rows: 9 buyer rows, but resample.k_neighbors=9 needs at least 10"),
])
def test_early_stopping_on_too_few_buyers_is_a_clear_error(engine, params_with, train_xy, buyers, method, phrase):
    features, y = train_xy
    keep = np.concatenate([np.flatnonzero(y == 0)[:400], np.flatnonzero(y == 1)[:buyers]])
    params = params_with(tune__early_stopping_rounds=5, resample__method=method, resample__k_neighbors=9)
    with pytest.raises(DataError, match=phrase):
        tune_hyperparameters(engine, features.iloc[keep], y[keep], params)


def test_early_stopping_never_sees_the_fold_it_is_scored_on(engine, params_with, train_xy, fit_spy):
    features, y = train_xy
    params = params_with(tune__early_stopping_rounds=5, resample__method="smote")
    tune_hyperparameters(engine, features, y, params)
    searched = params.tune.n_iter * params.tune.cv_folds
    fits, scores = fit_spy.pipeline_fits[:searched], fit_spy.pipeline_scores[:searched]
    assert len(fits) == len(scores) == searched
    for fitted, scored in zip(fits, scores):
        assert not set(scored.index) & set(fitted.index)
    # LightGBM trained on the oversampled 90 % of each training fold; the other 10 % only decided when to stop.
    for (model_rows, _), fitted in zip(fit_spy.model_fits, fits):
        assert len(model_rows) > 0.9 * len(fitted)


@pytest.mark.parametrize("method", ["smote", "borderline_smote", "adasyn"])
def test_kd_tree_neighbours_resample_exactly_as_brute_force(train_xy, monkeypatch, method):
    from sklearn.neighbors import NearestNeighbors

    import stages.lib.modeling.resampling as modeling

    features, y = train_xy
    fast = modeling.oversample(features, y, method, 5, 0.5, 7)
    monkeypatch.setattr(modeling, "_neighbours", lambda k, m: NearestNeighbors(n_neighbors=k + 1, algorithm="brute"))
    brute = modeling.oversample(features, y, method, 5, 0.5, 7)
    pd.testing.assert_frame_equal(fast[0], brute[0])
    np.testing.assert_array_equal(fast[1], brute[1])


class SearchStopped(Exception):
    pass


@pytest.mark.parametrize("threads, workers, n_points, jobs, per_fit", [
    ("auto", 1, 1, 1, 1),    # one core: one fit at a time, one thread
    ("auto", 2, 1, 3, 1),    # 3 folds on 2 cores: all 3 at once, the system shares the cores
    ("auto", 16, 1, 3, 5),   # 3 fits on 16 cores: 5 threads each
    ("auto", 16, 2, 6, 2),
    ("auto", 2, 4, 4, 1),    # at most 2 fits per core at once
    (1, 16, 1, 3, 1),        # a committed count is used as it is
    (4, 2, 1, 3, 4),
])
def test_tuning_runs_a_steps_fits_side_by_side_and_shares_the_cores(params_with, train_xy, monkeypatch,
                                                                     threads, workers, n_points, jobs, per_fit):
    import stages.lib.modeling.search as tune
    from stages.lib.engines.local.engine import LocalEngine

    built, started = [], []
    original = tune.make_pipeline

    def spy(model, resample, seed, fit_threads, *args, **kwargs):
        built.append(fit_threads)
        return original(model, resample, seed, fit_threads, *args, **kwargs)

    def stop(self, *args, **kwargs):  # what is tested is set before the search starts
        started.append(self.n_jobs)
        raise SearchStopped

    monkeypatch.setattr(tune, "make_pipeline", spy)
    monkeypatch.setattr(tune.BayesSearchCV, "fit", stop)
    features, y = train_xy
    with pytest.raises(SearchStopped):
        tune.tune_hyperparameters(LocalEngine(workers), features, y,
                                  params_with(model__threads=threads, tune__n_points=n_points, tune__cv_folds=3))
    assert built == [per_fit] and started == [jobs]
