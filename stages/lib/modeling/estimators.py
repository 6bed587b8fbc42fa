"""The estimators the model stages share: either model family inside the resampling pipeline, and the final fit.

`tune`, `calibrate` and `train` build their models from one `Recipe` (model.*,
resample.* and base.seed), so cross-validation, out-of-fold predictions and the
final fit use the same objects. Two families can ship: LightGBM and a logistic
regression (stages.lib.modeling.linear); `tune` chooses (stages.lib.modeling.family)
and writes the choice to models/best_params.json. The resampler sits inside an
imbalanced-learn Pipeline: it runs only while fitting, so in cross-validation it
sees each training fold and never a validation fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from imblearn.pipeline import Pipeline
from lightgbm import Booster, LGBMClassifier

from stages.lib.core.errors import ArtifactError
from stages.lib.core.params_model import ModelParams, ResampleParams
from stages.lib.core.tables import parquet_header
from stages.lib.data.schema import LABEL, feature_columns_of, split_features
from stages.lib.engines.base import Engine, Table
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


@dataclass(frozen=True)
class Recipe:
    """How every model of a run is built: LightGBM's fixed params and threads (model.*), the imbalance
    handling (resample.*) and the seed (base.seed)."""

    model: ModelParams
    resample: ResampleParams
    seed: int

    def classifier(self, threads: int, tuned: dict[str, Any] | None = None) -> LGBMClassifier:
        """LightGBM with the fixed params, the tuned ones, and determinism switched on; `threads` inside
        the fit (Engine.fit_threads)."""
        settings: dict[str, Any] = {
            "n_estimators": self.model.n_estimators,
            # Always explicit: LightGBM ignores OMP_NUM_THREADS.
            "n_jobs": threads,
            "random_state": self.seed,
            # Same data, params and thread count give the same trees, bit for bit.
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }
        if self.resample.method == "class_weight":
            settings["is_unbalance"] = True
        settings.update(tuned or {})
        return LGBMClassifier(**settings)

    def logistic_regression(self, features: pd.DataFrame, tuned: dict[str, Any] | None = None):
        """The logistic regression for tables with `features`' columns and categories; tuned: {"C": ...}."""
        return logistic_regression(features, balanced=self.resample.method == "class_weight", **(tuned or {}))

    def pipeline(self, threads: int, tuned: dict[str, Any] | None = None, family: str = LIGHTGBM,
                 features: pd.DataFrame | None = None) -> Pipeline:
        """Resampler (or passthrough) followed by the family's model; tuned keys are model params. The
        logistic regression needs the `features` it will see (their columns and categories)."""
        sampler = resampling.make_resampler(self.resample, self.seed)
        estimator = (self.logistic_regression(features, tuned) if family == LOGISTIC_REGRESSION
                     else self.classifier(threads, tuned))
        return Pipeline([("resample", sampler if sampler is not None else "passthrough"), ("model", estimator)])

    def fit_threads(self, engine: Engine, fits: int) -> int:
        """LightGBM threads inside each of a batch of `fits` fits on `engine` (model.threads)."""
        return engine.fit_threads(self.model.threads, fits)


def train_model(engine: Engine, path: Table, recipe: Recipe, id_columns: list[str], tuned: dict,
                family: str = LIGHTGBM) -> tuple[Any, int]:
    """The final model on every row of the (resampled) training table with the tuned params; returns it,
    as the same bytes on any machine, and the rows.

    LightGBM is fitted where the engine says (Engine.fit: on a Dask cluster, data-parallel on the
    workers). The logistic regression is one Newton solve over a few dozen columns: it is fitted in
    this process, on the table gathered from wherever the engine keeps it.
    """
    if family == LOGISTIC_REGRESSION:
        features, y = split_features(engine.gather(path), id_columns, str(path))
        return recipe.logistic_regression(features, tuned).fit(features, y), len(y)
    header = path.iloc[:0] if isinstance(path, pd.DataFrame) else parquet_header(path)
    model, rows = engine.fit(recipe.classifier(recipe.fit_threads(engine, 1), tuned), path,
                             feature_columns_of(header, id_columns), LABEL)
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
