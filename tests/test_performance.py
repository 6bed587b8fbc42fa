"""The performance switches: tuning progress line, LightGBM fit profiling, core split params, benchmark targets."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.markdown import markdown
from benchmarks.measure import child_env
from benchmarks.targets import check_targets
from stages.lib.errors import DataError, ParamsError
from stages.lib.params import parse_params
from stages.lib.tuning import TuningProgress, tune_hyperparameters

REPO_ROOT = Path(__file__).resolve().parents[1]


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


PROFILED_FIT = """
import numpy as np
from lightgbm import LGBMClassifier
from stages.lib import resampling
X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
print(hasattr(LGBMClassifier.fit, "__wrapped__"), hasattr(resampling.oversample, "__wrapped__"))
"""


@pytest.mark.parametrize("profiled", [True, False])
def test_profile_hook_times_every_lightgbm_fit_and_costs_nothing_when_unset(tmp_path, profiled):
    log = tmp_path / "profile.jsonl"
    out = subprocess.run([sys.executable, "-c", PROFILED_FIT], cwd=REPO_ROOT, env=child_env(log if profiled else None),
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{profiled} {profiled}"
    if profiled:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["event"] for r in records] == ["lightgbm_fit"] and records[0]["seconds"] > 0
    else:
        assert not log.exists()


def test_the_pipeline_code_knows_nothing_of_profiling():
    for path in (REPO_ROOT / "stages").rglob("*.py"):
        assert "PROPENSITY_PROFILE" not in path.read_text(), path


WORKER_FIT = """
import numpy as np
from lightgbm import LGBMClassifier
X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
"""


def test_benchmark_times_fits_in_processes_that_never_import_stages(tmp_path):
    # A cross-validation worker with resample.method none unpickles only LightGBM and
    # imbalanced-learn; the benchmark's environment must still time its fits.
    log = tmp_path / "profile.jsonl"
    subprocess.run([sys.executable, "-c", WORKER_FIT], cwd=REPO_ROOT, env=child_env(log), check=True)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["lightgbm_fit"]


def _run(label, rows, total, peak, train_wall=None, fit=None):
    stages = [{"stage": "train", "wall_s": train_wall or 10.0, "cpu_s": 1.0, "peak_rss_mb": peak,
               "exit_code": 0, "lightgbm_fit_s": fit}]
    return {"label": label, "rows": rows, "completed": True, "stages": stages, "total_wall_s": total,
            "peak_rss_mb": peak, "dvc_commit_s": 1.0, "noop_repro_s": 1.0}


def test_targets_say_by_how_much_a_run_missed():
    runs = [_run("1,000,000", 1_000_000, 1000.0, 7000.0, train_wall=100.0, fit=70.0)]
    targets = {t["target"]: t for t in check_targets(runs)}
    assert targets["1,000,000 rows end to end"]["met"] is False
    assert targets["1,000,000 rows end to end"]["margin"] == "missed by 100.0 s (11%)"
    assert targets["1,000,000 rows peak memory"]["met"] is False
    assert targets["1,000,000 rows: train stage time outside LightGBM's fit"]["measured"] == "30.0%"
    assert targets["10,000,000 rows completes"]["met"] is None
    results = {"machine": {"cpu": "x", "cores": 2, "memory_gb": 1, "os": "y", "python": "3", "lightgbm": "4"},
               "runs": runs, "targets": check_targets(runs)}
    assert "| 1,000,000 rows end to end | < 900 s | 1000 s | **no** | missed by 100.0 s (11%) |" in markdown(results)


def test_time_per_row_growth_compares_ten_million_with_one_million():
    runs = [_run("1,000,000", 1_000_000, 600.0, 1000.0), _run("10,000,000", 10_000_000, 6600.0, 9000.0)]
    targets = {t["target"]: t for t in check_targets(runs)}
    assert targets["time per row, 10M vs 1M"]["measured"] == "1.10x"
    assert targets["time per row, 10M vs 1M"]["met"] is True
    assert targets["10,000,000 rows peak memory"]["met"] is True


def _quality_run(label, rows, pipeline, lr=None, lgbm=None, flaml=None):
    run = _run(label, rows, 10.0, 100.0)
    flaml_entry = {"status": "run", "average_precision": flaml, "configs_tried": 9, "wall_s": 61.0, "cpu_s": 70.0,
                   "n_jobs": 2, "load_average": 2.0} if flaml is not None else {"status": "not run", "reason": "x"}
    baselines = {"flaml": flaml_entry}
    if lr is not None:
        baselines["logistic_regression"] = {"average_precision": lr, "average_precision_difference_se": 0.02}
    if lgbm is not None:
        baselines["default_lightgbm"] = {"average_precision": lgbm}
    run["quality"] = {"test_rows": 600, "test_buyers": 30, "average_precision": pipeline, "roc_auc": 0.8,
                      "ideal_average_precision": None, "average_precision_ratio": None, "baselines": baselines,
                      "family": "logistic_regression"}
    return run


def _quality(runs, label):
    return next(t for t in check_targets(runs) if t["target"].startswith(label) and "baseline" in t["target"])


def test_quality_target_fails_when_any_baseline_ranks_better_and_says_which_and_by_how_much():
    runs = [_quality_run("own table", 3000, 0.40, lr=0.45, lgbm=0.30, flaml=0.42)]
    target = _quality(runs, "own table (3,000 rows):")
    assert target["met"] is False
    assert target["measured"] == "0.4000 vs logistic regression 0.4500"
    assert target["margin"] == "missed by 0.0500 AP (-11.1%), logistic regression ranks better"
    results = {"machine": {"cpu": "x", "cores": 2, "memory_gb": 1, "os": "y", "python": "3", "lightgbm": "4"},
               "runs": runs, "targets": check_targets(runs)}
    table = markdown(results)
    assert "| own table | 3,000 | 600 (30) | logistic regression | **0.4000** |  |  | 0.8000 | 0.4500 (0.0200) | " \
           "0.3000 | 0.4200 | " \
           "logistic regression | 9 configs in a 60 s budget, 61 s wall, 70 s CPU, n_jobs 2, load 2.0 |" in table


def test_quality_target_is_met_only_when_the_pipeline_ties_or_beats_every_baseline():
    met = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.38, lgbm=0.40, flaml=0.39)], "10,000 rows:")
    assert met["met"] is True and met["margin"] == "0.0000 AP to spare (+0.0%)"
    assert met["measured"] == "0.4000 vs default LightGBM 0.4000"
    # FLAML not run: beating the other two is not enough to call the target met.
    partial = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.38, lgbm=0.39)], "10,000 rows:")
    assert partial["met"] is None and "FLAML 60 s not run" in partial["measured"]
    # ... but losing to one that did run is a miss.
    missed = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.41, lgbm=0.39)], "10,000 rows:")
    assert missed["met"] is False
    # A run measured before quality was recorded has the target, not run.
    old = _quality([_run("1,000,000", 1_000_000, 100.0, 100.0)], "1,000,000 rows:")
    assert old["met"] is None and old["measured"] == "not run"


def test_early_stopping_keeps_fewer_trees_and_hands_the_count_to_train(engine, params_with, train_xy):
    features, y = train_xy
    params = params_with(tune__early_stopping_rounds=5, model__n_estimators=200)
    first = tune_hyperparameters(engine, features, y, params)
    second = tune_hyperparameters(engine, features, y, params)
    assert first == second  # deterministic: same rows and params, same search and tree count
    assert 1 <= first.best_params["n_estimators"] < 200


def test_early_stopping_classifier_trains_on_resampled_rows_and_stops_on_real_ones(train_xy, monkeypatch):
    import lightgbm

    from stages.lib.models import EarlyStoppingClassifier

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

    import stages.lib.resampling as modeling

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
    import stages.lib.tuning as tune
    from stages.lib.engines.local import LocalEngine

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
