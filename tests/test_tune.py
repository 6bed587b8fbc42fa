"""tune: the Bayesian search trace, its best-so-far curve, what data it searches on, its progress line and how
its fits share the cores."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from stages import tune
from stages.lib.core.errors import ParamsError
from stages.lib.core.params import parse_params
from stages.lib.core.params_model import Dimension
from stages.lib.core.tables import write_table
from stages.lib.data.sampling import sample_table
from stages.lib.data.schema import split_features
from stages.lib.modeling.edges import edge_warning, edges_hit
from stages.lib.modeling.progress import TuningProgress
from stages.lib.modeling.search import search_space, tune_hyperparameters
from tests.helpers import python_module, recipe_of, write_params


@pytest.fixture(scope="module")
def result(engine, params, _splits):
    """One search, shared by the tests of its trace."""
    features, y = split_features(_splits[0], params.data.id_columns)
    return tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)


def test_trace_has_one_row_per_iteration(params, result):
    assert len(result.trace) == params.tune.n_iter
    assert [row["iteration"] for row in result.trace] == list(range(1, params.tune.n_iter + 1))


def test_best_so_far_is_the_running_maximum(result):
    scores = [row["score"] for row in result.trace]
    best = [row["best_so_far"] for row in result.trace]
    assert best == list(np.maximum.accumulate(scores))
    assert all(b2 >= b1 for b1, b2 in zip(best, best[1:]))
    assert result.best_score == max(scores) == best[-1]


def test_best_params_are_the_best_iterations_params(params, result):
    best_row = result.trace[int(np.argmax([row["score"] for row in result.trace]))]
    assert set(result.best_params) == set(params.tune.search_space)
    assert result.best_params == {k: best_row[k] for k in result.best_params}


def test_proposals_stay_inside_the_search_space(params, result):
    for row in result.trace:
        for name, dim in params.tune.search_space.items():
            assert dim.low <= row[name] <= dim.high, (name, row[name])
            if dim.type == "integer":
                assert isinstance(row[name], int), (name, row[name])
            else:
                assert isinstance(row[name], float), (name, row[name])


def test_score_is_a_cross_validated_average_precision(result, train_table):
    base_rate = train_table["__label__"].mean()
    # Average precision of a useful ranking: well above the base rate, below perfection.
    assert base_rate * 2 < result.best_score < 0.95


def test_search_space_keys_address_the_pipelines_model_step(params):
    space = search_space(params.tune, 4000)
    assert set(space) == {f"model__{name}" for name in params.tune.search_space}
    assert space["model__learning_rate"].prior == "log-uniform"
    assert space["model__num_leaves"].low == params.tune.search_space["num_leaves"].low


def test_search_is_deterministic(engine, params, train_xy, result):
    features, y = train_xy
    again = tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    assert again.trace == result.trace
    assert again.best_params == result.best_params


def test_sample_rows_runs_the_search_on_a_stratified_subsample(engine, params_with, train_table, fit_spy):
    params = params_with(tune__sample_rows=1000)
    ids = params.data.id_columns[0]
    sample = sample_table(engine, train_table, params.tune.sample_size, params.base.seed)
    features, y = split_features(sample, params.data.id_columns)
    assert len(y) == 1000 and y.sum() == round(1000 * train_table["__label__"].mean())
    features.index = sample[ids].to_numpy()
    outcome = tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    assert outcome.rows == 1000
    assert len(fit_spy.pipeline_fits) == params.tune.n_iter * params.tune.cv_folds
    assert fit_spy.rows_seen() == set(features.index)
    for fitted in fit_spy.pipeline_fits:
        assert len(fitted) == pytest.approx(1000 * (1 - 1 / params.tune.cv_folds), abs=1)


def test_auto_sample_rows_is_every_row_up_to_its_size(params_with):
    assert params_with(tune__sample_rows="auto").tune.sample_size == 200_000
    assert params_with(tune__sample_rows=None).tune.sample_size is None
    assert params_with(tune__sample_rows=5000).tune.sample_size == 5000


def test_the_stage_reads_only_the_training_split_and_writes_the_choice_both_scores_and_one_line(
        tmp_path, raw_params, train_table, test_table, read_spy, capsys):
    raw_params["model"]["family"] = "auto"
    train_path, test_path = tmp_path / "train.parquet", tmp_path / "test.parquet"
    write_table(train_table, train_path)
    write_table(test_table, test_path)  # beside it, and never read
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    opened = read_spy(tune)
    tune.main(["--params", str(params_path), "--train", str(train_path),
               "--best-params", str(tmp_path / "best.json"), "--metrics", str(tmp_path / "tune.json"),
               "--trace", str(tmp_path / "trace.json")])
    assert opened == [str(train_path)]
    metrics = json.loads((tmp_path / "tune.json").read_text())
    trace = json.loads((tmp_path / "trace.json").read_text())
    best = json.loads((tmp_path / "best.json").read_text())
    assert metrics["rows"] == len(train_table)
    assert len(trace) == raw_params["tune"]["n_iter"]
    assert metrics["lightgbm"]["best_cv_score"] == max(row["score"] for row in trace)
    comparison = metrics["comparison"]
    assert best["family"] == metrics["family"] == (
        "lightgbm" if comparison["difference"] > comparison["standard_error"] else "logistic_regression")
    assert comparison["difference"] == pytest.approx(comparison["lightgbm"] - comparison["logistic_regression"])
    searched = (metrics["lightgbm"]["best_params"] if best["family"] == "lightgbm"
                else {"C": metrics["logistic_regression"]["C"]})
    assert best["params"] == searched
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tune: ")]
    assert len(lines) == 1 and f"{best['family'].replace('_', ' ')} ships" in lines[0]


def test_edges_name_each_dimension_whose_best_value_sits_on_a_bound(params):
    inside = {"learning_rate": 0.05, "num_leaves": 20, "min_child_samples": 50, "colsample_bytree": 0.7,
              "reg_lambda": 0.1}
    assert edges_hit(inside, params.tune, 5000) == {}
    assert edge_warning({}, inside, params.tune, 5000) is None
    on_edges = {**inside, "learning_rate": 0.0101, "num_leaves": 64, "reg_lambda": 0.001}
    assert edges_hit(on_edges, params.tune, 5000) == {"learning_rate": "low", "num_leaves": "high",
                                                      "reg_lambda": "low"}
    line = edge_warning(edges_hit(on_edges, params.tune, 5000), on_edges, params.tune, 5000)
    assert line.startswith("warning: ") and "\n" not in line
    assert "lower tune.search_space.learning_rate.low" in line and "raise tune.search_space.num_leaves.high" in line


def test_the_stage_records_edges_and_warns_in_one_line(tmp_path, raw_params, train_table):
    # A space so narrow that any best point is on an edge of it.
    raw_params["tune"]["search_space"] = {"num_leaves": {"low": 4, "high": 5, "type": "integer"}}
    write_table(train_table, tmp_path / "train.parquet")
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    result = python_module("stages.tune", "--params", params_path, "--train", tmp_path / "train.parquet",
                           "--best-params", tmp_path / "best.json", "--metrics", tmp_path / "tune.json",
                           "--trace", tmp_path / "trace.json")
    recorded = json.loads((tmp_path / "tune.json").read_text())
    searched = recorded["lightgbm"]
    assert searched["edges"] == {"num_leaves": "low" if searched["best_params"]["num_leaves"] == 4 else "high"}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "tune.search_space.num_leaves" in warnings[0]


def test_an_end_at_lightgbms_own_limit_is_no_edge(params):
    space = params.tune.model_copy(update={"search_space": {
        **params.tune.search_space,
        "num_leaves": params.tune.search_space["num_leaves"].model_copy(update={"low": 2}),
        "colsample_bytree": params.tune.search_space["colsample_bytree"].model_copy(update={"high": 1.0}),
    }})
    best = {"learning_rate": 0.05, "num_leaves": 2, "min_child_samples": 50, "colsample_bytree": 1.0,
            "reg_lambda": 0.1}
    assert edges_hit(best, space, 5000) == {}


def test_a_dimension_of_rows_searches_shares_of_the_tuning_rows_and_its_edges_are_those_searched(params):
    leaf = Dimension(low=0.001, high=0.05, type="integer", prior="log-uniform", of_rows=True)
    tune = params.tune.model_copy(update={"search_space": {**params.tune.search_space, "min_child_samples": leaf}})
    assert (tune.space_searched(10_000)["min_child_samples"].low, tune.space_searched(10_000)["min_child_samples"].high
            ) == (10, 500)
    small = tune.space_searched(300)["min_child_samples"]   # 0.3 and 15 rows: at least one row per leaf
    assert (small.low, small.high, small.of_rows) == (1, 15, False)
    assert search_space(tune, 10_000)["model__min_child_samples"].bounds == (10, 500)
    inside = {"learning_rate": 0.05, "num_leaves": 20, "colsample_bytree": 0.7, "reg_lambda": 0.1}
    assert edges_hit({**inside, "min_child_samples": 10}, tune, 10_000) == {"min_child_samples": "low"}
    assert edges_hit({**inside, "min_child_samples": 500}, tune, 10_000) == {"min_child_samples": "high"}
    assert edges_hit({**inside, "min_child_samples": 1}, tune, 300) == {}   # one row: LightGBM's own floor
    line = edge_warning({"min_child_samples": "high"}, {**inside, "min_child_samples": 500}, tune, 10_000)
    assert "raise tune.search_space.min_child_samples.high, a share of the 10,000 rows tuned on" in line


def test_the_stage_records_the_bounds_a_dimension_of_rows_searched(tmp_path, raw_params, train_table):
    raw_params["tune"]["search_space"]["min_child_samples"] = {"low": 0.002, "high": 0.05, "type": "integer",
                                                               "of_rows": True}
    raw_params["tune"]["n_iter"] = 3
    write_table(train_table, tmp_path / "train.parquet")
    params_path = write_params(raw_params, tmp_path / "params.yaml")
    python_module("stages.tune", "--params", params_path, "--train", tmp_path / "train.parquet",
                  "--best-params", tmp_path / "best.json", "--metrics", tmp_path / "tune.json",
                  "--trace", tmp_path / "trace.json")
    recorded = json.loads((tmp_path / "tune.json").read_text())
    rows = recorded["rows"]
    low, high = recorded["lightgbm"]["bounds_searched"]["min_child_samples"]
    assert (low, high) == (max(1, round(0.002 * rows)), round(0.05 * rows))
    tried = [point["min_child_samples"] for point in json.loads((tmp_path / "trace.json").read_text())]
    assert tried and all(low <= value <= high for value in tried)


@pytest.mark.parametrize("dimension, problem", [
    ({"low": 0.001, "high": 0.05, "of_rows": True}, "of_rows needs type integer"),
    ({"low": 0.001, "high": 2.0, "type": "integer", "of_rows": True}, "0 < low < high <= 1"),
])
def test_a_dimension_of_rows_needs_integer_shares(raw_params, dimension, problem):
    raw_params["tune"]["search_space"]["min_child_samples"] = dimension
    with pytest.raises(ParamsError, match=problem):
        parse_params(raw_params)


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
    params = params_with(tune__n_points=2)
    result = tune_hyperparameters(engine, features, y, recipe_of(params), params.tune,
                                  TuningProgress(2, "average_precision", stream))
    # n_points=2 proposes both candidates in one step: one update, after both were scored.
    assert "2/2" in stream.getvalue() and "1/2" not in stream.getvalue()
    assert len(result.trace) == 2


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
    import stages.lib.modeling.search as search
    from stages.lib.engines.local.engine import LocalEngine
    from stages.lib.modeling.estimators import Recipe

    built, started = [], []
    original = Recipe.pipeline

    def spy(self, fit_threads, *args, **kwargs):
        built.append(fit_threads)
        return original(self, fit_threads, *args, **kwargs)

    def stop(self, *args, **kwargs):  # what is tested is set before the search starts
        started.append(self.n_jobs)
        raise SearchStopped

    monkeypatch.setattr(Recipe, "pipeline", spy)
    monkeypatch.setattr(search.RoundingBayesSearchCV, "fit", stop)
    features, y = train_xy
    params = params_with(model__threads=threads, tune__n_points=n_points, tune__cv_folds=3)
    with pytest.raises(SearchStopped):
        search.tune_hyperparameters(LocalEngine(workers), features, y, recipe_of(params), params.tune)
    assert built == [per_fit] and started == [jobs]
