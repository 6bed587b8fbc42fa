"""What the sections of params.yaml are made of: the allowed values, the shared types, the Section base.

The sections themselves: stages.lib.core.params_sections (base, compute, generate,
data, preprocess) and stages.lib.core.params_model (resample to evaluate). Each
field's description is its documentation: docs/parameters.md and the comments of
params.yaml are generated from them (`python -m docs.build`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RESAMPLE_METHODS = ("none", "class_weight", "smote", "smotenc", "borderline_smote", "adasyn")
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")
THRESHOLD_OBJECTIVES = ("f1", "min_precision", "top_fraction", "profit")
PRIORS = ("uniform", "log-uniform")
DIMENSION_TYPES = ("real", "integer")
DUPLICATE_ID_POLICIES = ("warn", "error")
GENERATE_TRUTHS = ("nonlinear", "linear")
ENGINES = ("local", "dask")
# model.family: which model ships; `auto` compares the tuned LightGBM with a logistic regression
# (stages/lib/modeling/search.py).
MODEL_FAMILIES = ("auto", "lightgbm", "logistic_regression")
# model.threads: the cores a fit gets (stages/lib/engines/base.py); sample_rows: every row up to a size, a sample above.
AUTO = "auto"
# What `auto` means for each sample_rows: every row of the training split up to this many, a stratified
# sample of this many above it.
AUTO_SAMPLE_ROWS = {"tune.sample_rows": 200_000, "calibration.sample_rows": 1_000_000,
                    "evaluate.baseline_sample_rows": 1_000_000}
# Scorers that rank customers by probability; BayesSearchCV maximises the one chosen.
TUNE_SCORINGS = ("average_precision", "roc_auc", "neg_log_loss", "neg_brier_score", "f1", "recall", "precision")

Text = Annotated[str, StringConstraints(min_length=1)]
# A positive count, or `auto`.
Count = Union[Annotated[int, Field(ge=1)], Literal[AUTO]]
# Rows of a stratified sample of the training split: a count, `auto` (AUTO_SAMPLE_ROWS) or null (every row).
SampleRows = Optional[Union[Annotated[int, Field(ge=10)], Literal[AUTO]]]


def rows_of(value: int | str | None, key: str) -> int | None:
    return AUTO_SAMPLE_ROWS[key] if value == AUTO else value


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def no_ids(value: Any) -> Any:
    """An empty `id_columns:` (YAML null) means no ID columns, as `[]` does."""
    return [] if value is None else value


def empty_is_none(value: Any) -> Any:
    """An empty string means no value, as an empty YAML value (null) does (`dvc exp run -S key=` writes one)."""
    return None if value == "" else value


def doc(text: str, **constraints: Any) -> Any:
    """A field's meaning: docs/parameters.md is generated from these (python -m docs.build)."""
    return Field(description=" ".join(text.split()), **constraints)
