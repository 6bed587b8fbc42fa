"""Shared fixtures: the tests' own small params, small frames, spies, and one reproduced repository.

Every stage's plain functions are tested on a few thousand generated customers
with a tiny search (2 iterations, 2 folds, 30 trees), so the unit tests run in
seconds. Session-scoped frames are handed out as copies, so a test that edits
its frame cannot change what another test sees.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import Params, parse_params
from stages.lib.data.schema import split_features
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import generate_customers
from stages.lib.modeling.estimators import Recipe
from stages.lib.modeling.resampling import resample_training
from tests.helpers import DATED, FROM_EVENTS, customers_to_score, dvc, edited_params, git, new_repo, recipe_of, set_key

# A test is marked `subprocess` when it, or a fixture it uses, starts a child process through these
# (a stage, dvc, git, a signal to a child): each costs seconds of start-up, so the fast command skips them.
CHILD_PROCESS = re.compile(r"\b(python_module|start_module|dvc|git|repro_killed_during)\(|"
                           r"\bsubprocess\.(run|Popen|check_output|check_call)\(")


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names |= _code_names(constant)
    return names


def _starts_a_child(function, seen: set | None = None) -> bool:
    """Whether `function`, or a function or class of its own test module that it uses (a helper such
    as `Generate.start`), starts a child process."""
    seen = set() if seen is None else seen
    if function is None or id(function) in seen:
        return False
    seen.add(id(function))
    try:
        if CHILD_PROCESS.search(inspect.getsource(function)):
            return True
    except (OSError, TypeError):
        return False
    code = getattr(function, "__code__", None)
    if code is None:  # a class: its source was searched above
        return False
    module = function.__module__
    used = [function.__globals__.get(name) for name in _code_names(code)]
    return any(_starts_a_child(thing, seen) for thing in used
               if (inspect.isfunction(thing) or inspect.isclass(thing)) and thing.__module__ == module)


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = [definition.func for definitions in item._fixtureinfo.name2fixturedefs.values()
                    for definition in definitions]
        if any(_starts_a_child(function) for function in [getattr(item, "function", None), *fixtures]):
            item.add_marker(pytest.mark.subprocess)


# The tests' params for stage functions called in this process: a few more customers.
IN_PROCESS = {"generate.rows": 4000}


@pytest.fixture(scope="session")
def engine():
    """The local engine with one worker: every fit runs in this process, where the fit spies see it."""
    from stages.lib.engines.local.engine import LocalEngine

    return LocalEngine(1)


@pytest.fixture(scope="session")
def small_raw() -> dict:
    return edited_params(IN_PROCESS)


@pytest.fixture
def raw_params(small_raw) -> dict:
    """A fresh, editable copy of the small params mapping."""
    return copy.deepcopy(small_raw)


@pytest.fixture(scope="session")
def params(small_raw) -> Params:
    return parse_params(copy.deepcopy(small_raw))


@pytest.fixture(scope="session")
def params_with(small_raw) -> Callable[..., Params]:
    """params_with(resample__method="none") -> Params with that key changed."""
    def build(**overrides: Any) -> Params:
        raw = copy.deepcopy(small_raw)
        for key, value in overrides.items():
            set_key(raw, key.replace("__", "."), value)
        return parse_params(raw)
    return build


@pytest.fixture(scope="session")
def _generated(params):
    return generate_customers(params.generate, params.base.seed)


@pytest.fixture
def customers(_generated) -> pd.DataFrame:
    return _generated[0].copy()


@pytest.fixture
def true_probabilities(_generated) -> pd.DataFrame:
    return _generated[1].copy()


@pytest.fixture(scope="session")
def recipe(params) -> Recipe:
    """How the small params build every model (model.*, resample.*, base.seed)."""
    return recipe_of(params)


@pytest.fixture(scope="session")
def _splits(engine, params, _generated):
    return preprocess_customers(engine, _generated[0].copy(), params.data, params.preprocess, params.base.seed)


@pytest.fixture
def train_table(_splits) -> pd.DataFrame:
    return _splits[0].copy()


@pytest.fixture
def test_table(_splits) -> pd.DataFrame:
    return _splits[1].copy()


@pytest.fixture(scope="session")
def preprocessor(_splits):
    return _splits[2]


@pytest.fixture(scope="session")
def _resampled(params, _splits):
    return resample_training(_splits[0].copy(), params.resample, params.base.seed, params.data.id_columns)


@pytest.fixture
def resampled_table(_resampled) -> pd.DataFrame:
    return _resampled[0].copy()


@pytest.fixture
def resample_report(_resampled) -> dict:
    return copy.deepcopy(_resampled[1])


@pytest.fixture
def train_xy(params, train_table):
    """Training features indexed by customer ID (so spies can tell rows apart), and labels."""
    ids = params.data.id_columns[0]
    features, y = split_features(train_table, params.data.id_columns)
    features.index = pd.Index(train_table[ids].to_numpy(), name=ids)
    return features, y


class FitSpy:
    """What every model saw: rows each pipeline was fitted and scored on, and what LightGBM got.

    Pipelines are fitted and scored on frames whose index is the customer ID (see
    `train_xy`), so the recorded index tells exactly which customers a model saw.
    """

    def __init__(self):
        self.pipeline_fits: list[pd.DataFrame] = []
        self.pipeline_scores: list[pd.DataFrame] = []
        self.model_fits: list[tuple[pd.DataFrame, np.ndarray]] = []

    def rows_seen(self) -> set:
        return {i for frame in self.pipeline_fits + self.pipeline_scores for i in frame.index}


@pytest.fixture
def fit_spy(monkeypatch) -> FitSpy:
    """Record every imbalanced-learn Pipeline fit and scoring call, and every LightGBM fit.

    Scorers call predict_proba or decision_function (average precision prefers the
    latter), so both count as scoring. Works because the searches run in this process.
    """
    from imblearn.pipeline import Pipeline
    from lightgbm import LGBMClassifier

    spy = FitSpy()
    pipeline_fit, model_fit = Pipeline.fit, LGBMClassifier.fit

    def spied_pipeline_fit(self, X, y=None, **kwargs):
        spy.pipeline_fits.append(X.copy())
        return pipeline_fit(self, X, y, **kwargs)

    def spied_model_fit(self, X, y, **kwargs):
        spy.model_fits.append((X.copy(), np.asarray(y).copy()))
        return model_fit(self, X, y, **kwargs)

    def spied_scoring(original):
        @functools.wraps(original)  # scorers look the method up again by its __name__
        def score(self, X, **kwargs):
            spy.pipeline_scores.append(X.copy())
            return original(self, X, **kwargs)
        return score

    monkeypatch.setattr(Pipeline, "fit", spied_pipeline_fit)
    monkeypatch.setattr(LGBMClassifier, "fit", spied_model_fit)
    for name in ("predict_proba", "decision_function", "predict"):
        monkeypatch.setattr(Pipeline, name, spied_scoring(getattr(Pipeline, name)))
    return spy


@pytest.fixture
def read_spy(monkeypatch) -> Callable[[object], list[str]]:
    """read_spy(stage_module) -> the list of paths that module's read_table/read_json open, itself or
    through the local engine (which reads every table a stage hands it) and the split's label reader."""
    from stages.lib.data import sampling
    from stages.lib.engines.local import engine as local

    def install(module) -> list[str]:
        opened: list[str] = []
        for reader in (module, local, sampling):
            for name in ("read_table", "read_json"):
                original = getattr(reader, name, None)
                if original is None:
                    continue

                def spied(path, *args, _original=original, **kwargs):
                    opened.append(str(path))
                    return _original(path, *args, **kwargs)

                monkeypatch.setattr(reader, name, spied)
        return opened
    return install


def _reproduced(tmp_path_factory, worker_id, name: str, edits: dict) -> Path:
    """A test repository with the tests' params and `edits` after `dvc repro`, with dvc.lock and metrics
    committed; built once per test run, by whichever pytest-xdist worker needs it first, while the others wait
    for it. Tests must not change it; one that needs to copies it first (`tests.helpers.copy_repo`)."""
    from filelock import FileLock

    # The folder every worker's own temporary folder sits in (pytest's own, without workers).
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    repo, done = shared / name / "repo", shared / name / "done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            new_repo(repo, edits)
            dvc("repro", cwd=repo)
            git("add", "-A", cwd=repo)
            git("commit", "-q", "-m", "reproduce with the test params", cwd=repo)
            done.touch()
    return repo


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory, worker_id) -> Path:
    """The tests' params (a single undated export) reproduced (`_reproduced`)."""
    return _reproduced(tmp_path_factory, worker_id, "reproduced", {})


@pytest.fixture(scope="session")
def reproduced_dated_repo(tmp_path_factory, worker_id) -> Path:
    """The tests' params made dated (monthly snapshots, the out-of-time split) reproduced (`_reproduced`)."""
    return _reproduced(tmp_path_factory, worker_id, "reproduced-dated", DATED)


@pytest.fixture(scope="session")
def reproduced_events_repo(tmp_path_factory, worker_id) -> Path:
    """The tests' params learning from the generated event tables through the features stage (`_reproduced`)."""
    return _reproduced(tmp_path_factory, worker_id, "reproduced-events", FROM_EVENTS)


@pytest.fixture(scope="session")
def customers_csv(reproduced_repo, tmp_path_factory) -> Path:
    """New customers to score with the reproduced repository's model: the head of its generated table, as CSV."""
    return customers_to_score(reproduced_repo, tmp_path_factory.mktemp("input") / "customers.csv")
