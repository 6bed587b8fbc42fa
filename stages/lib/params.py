"""Load params.yaml once, check every key, and hand out typed, frozen sections.

The sections are pydantic models: strict types (a YAML string "5" is not an integer,
true is not an integer; an integer is accepted for a number), ranges, choices and
unknown keys. Every problem is collected and reported together, one line each, with
its full key path, the value found and what is allowed, so a user fixes params.yaml in
one pass instead of one error per run. `_problem` turns pydantic's errors into those lines.
"""

from __future__ import annotations

import difflib
import functools
import operator
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from ruamel.yaml import YAML, YAMLError

from stages.lib.errors import ParamsError

DEFAULT_PARAMS_PATH = "params.yaml"

RESAMPLE_METHODS = ("none", "class_weight", "smote", "smotenc", "borderline_smote", "adasyn")
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")
THRESHOLD_OBJECTIVES = ("f1", "min_precision", "top_fraction", "profit")
PRIORS = ("uniform", "log-uniform")
DIMENSION_TYPES = ("real", "integer")
DUPLICATE_ID_POLICIES = ("warn", "error")
GENERATE_TRUTHS = ("nonlinear", "linear")
ENGINES = ("local", "dask")
# model.family: which model ships; `auto` compares the tuned LightGBM with a logistic regression (stages/lib/tuning.py).
MODEL_FAMILIES = ("auto", "lightgbm", "logistic_regression")
# model.threads: the cores a fit gets (stages/lib/compute.py); sample_rows: every row up to a size, a sample above.
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


def _sample_size(value: int | str | None, key: str) -> int | None:
    return AUTO_SAMPLE_ROWS[key] if value == AUTO else value


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class BaseParams(_Section):
    seed: int = Field(ge=0, le=2**32 - 1)


class ComputeParams(_Section):
    # Where the fits run: this machine (local) or a Dask cluster (dask). Where the cluster is, is
    # Dask's configuration (DASK_SCHEDULER_ADDRESS), never this file.
    engine: Literal[ENGINES] = "local"


class GenerateParams(_Section):
    rows: int = Field(ge=1)
    purchase_rate: float = Field(gt=0.0, lt=0.5)
    # How purchases are drawn: the non-linear truth, or log-odds linear in a few columns.
    truth: Literal[GENERATE_TRUTHS] = "nonlinear"


class DataParams(_Section):
    path: Text
    target: Text
    positive_label: Union[int, bool, Text]
    id_columns: list[Text] = []
    # None: every string, boolean or categorical column that is not an ID or the target.
    categorical_columns: Optional[list[Text]] = None
    duplicate_ids: Literal[DUPLICATE_ID_POLICIES] = "warn"


class PreprocessParams(_Section):
    test_size: float = Field(gt=0.0, lt=1.0)
    rare_category_min_count: int = Field(default=10, ge=1)


class ResampleParams(_Section):
    method: Literal[RESAMPLE_METHODS]
    k_neighbors: int = Field(default=5, ge=1)
    # Minority rows per majority row after resampling, as imbalanced-learn's float strategy.
    sampling_strategy: float = Field(default=1.0, gt=0.0, le=1.0)


class ModelParams(_Section):
    family: Literal[MODEL_FAMILIES] = "auto"
    n_estimators: int = Field(ge=1)
    threads: Count = AUTO


class Dimension(_Section):
    low: Optional[float] = None
    high: Optional[float] = None
    prior: Literal[PRIORS] = "uniform"
    type: Literal[DIMENSION_TYPES] = "real"
    categories: Optional[list[Union[Text, int, float, bool]]] = None


class TuneParams(_Section):
    n_iter: int = Field(ge=1)
    cv_folds: int = Field(ge=2)
    # Keys are LightGBM parameter names; a YAML key such as 1 is read as "1".
    search_space: dict[Annotated[str, BeforeValidator(str)], Dimension] = Field(min_length=1)
    scoring: Literal[TUNE_SCORINGS] = "average_precision"
    # Candidates evaluated per search step: n_points * cv_folds fits can run at once.
    n_points: int = Field(default=1, ge=1)
    # Stop each cross-validation fit after this many trees without improvement on a
    # held-out slice of its training fold (None: always model.n_estimators trees).
    early_stopping_rounds: Optional[int] = Field(default=None, ge=1)
    # Tune on a stratified subsample of the training split (None: all rows).
    sample_rows: SampleRows = AUTO

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "tune.sample_rows")


class CalibrationParams(_Section):
    method: Literal[CALIBRATION_METHODS]
    cv_folds: int = Field(default=3, ge=2)
    sample_rows: SampleRows = AUTO

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "calibration.sample_rows")


class ThresholdParams(_Section):
    objective: Literal[THRESHOLD_OBJECTIVES]
    min_precision: float = Field(default=0.5, gt=0.0, le=1.0)
    top_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    # objective profit: what contacting one customer costs, and what one buyer reached is worth.
    contact_cost: float = Field(default=1.0, gt=0.0)
    buyer_value: float = Field(default=20.0, gt=0.0)


class EvaluateParams(_Section):
    top_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    calibration_bins: int = Field(default=10, ge=2)
    # Fit the baselines on a stratified subsample of the training split (None: all rows).
    baseline_sample_rows: SampleRows = AUTO

    @property
    def baseline_sample_size(self) -> int | None:
        return _sample_size(self.baseline_sample_rows, "evaluate.baseline_sample_rows")


class Params(_Section):
    base: BaseParams
    compute: ComputeParams = ComputeParams()
    generate: GenerateParams
    data: DataParams
    preprocess: PreprocessParams
    resample: ResampleParams
    model: ModelParams
    tune: TuneParams
    calibration: CalibrationParams
    threshold: ThresholdParams
    evaluate: EvaluateParams


def _where(path: str) -> str:
    return f"params.yaml: {path}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bare(annotation: Any) -> Any:
    """`annotation` without Annotated[...] constraints and without Optional[...]."""
    if typing.get_origin(annotation) is Annotated:
        return _bare(typing.get_args(annotation)[0])
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _bare(options[0]) if typing.get_origin(annotation) is Union and len(options) == 1 else annotation


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union:
        names = " or ".join(_type_name(a) for a in args if a is not type(None))
        return names + (" or null" if type(None) in args else "")
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(_bare(args[0]), 'values')}"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "a mapping"
    if origin is Literal:
        return "a string"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(annotation, str(annotation))


def _locate(loc: tuple) -> tuple[str, Any, int]:
    """The key path (`tune.search_space.x.low`, `data.id_columns[0]`) and declared type at a pydantic
    loc, and how many parts of loc they cover: a problem inside an Optional or Union is the field's."""
    path, declared = "", Params
    for depth, part in enumerate(loc):
        if typing.get_origin(declared) is Union:
            return path[1:], declared, depth
        inner = _bare(declared)
        if typing.get_origin(inner) is list:
            path, declared = f"{path}[{part}]", typing.get_args(inner)[0]
        elif typing.get_origin(inner) is dict:
            path, declared = f"{path}.{part}", typing.get_args(inner)[1]
        else:
            field = inner.model_fields.get(part)
            path, declared = f"{path}.{part}", field and field.annotation
    return path[1:], declared, len(loc)


_BOUNDS = {"greater_than_equal": ("ge", ">="), "less_than_equal": ("le", "<="),
           "greater_than": ("gt", ">"), "less_than": ("lt", "<")}


def _problem(error: Mapping[str, Any], raw: Mapping) -> str:
    """One pydantic error as a line for the user: where, the value found, and what is allowed."""
    kind, loc = error["type"], error["loc"]
    path, declared, depth = _locate(loc)
    # Within an Optional or Union, the value of the field as a whole, not of the member that failed.
    value = error["input"] if depth == len(loc) else functools.reduce(operator.getitem, loc[:depth], raw)
    if declared in (Count, SampleRows) and kind not in ("extra_forbidden", "invalid_key", "missing"):
        return _count_problem(path, value, 1 if declared == Count else 10, declared == SampleRows)
    if kind in ("extra_forbidden", "invalid_key"):
        known = list(_bare(_locate(loc[:-1])[1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"{_where(path)}: unknown key{hint}"
    if kind == "missing":
        return f"{_where(path)} is missing; add it ({_type_name(declared)})"
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        limit = error["ctx"][key]
        return f"{_where(path)} is {type(limit)(value)!r}; it must be {symbol} {limit}"
    inner = _bare(declared)
    if kind == "literal_error" and isinstance(value, str) and value:
        allowed = typing.get_args(inner)
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{_where(path)} is {value!r}; allowed: {', '.join(allowed)}{hint}"
    if kind == "model_type":
        expected = "a mapping of keys"
    elif kind in ("dict_type", "too_short"):
        expected = "a non-empty mapping"
    elif value == "" and typing.get_origin(inner) in (None, Literal):
        expected = "a non-empty string"
    else:
        expected = _type_name(declared)
    return f"{_where(path)} is {value!r}; expected {expected}"


def _count_problem(path: str, value: Any, least: int, nullable: bool) -> str:
    """A Count or SampleRows (a whole number >= least, or auto, or null) is one line, whichever member
    of its union failed."""
    null = ", or null" if nullable else ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{_where(path)} is {value!r}; it must be >= {least}, or {AUTO}{null}"
    if isinstance(value, str) and value:
        close = difflib.get_close_matches(value, [AUTO], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{_where(path)} is {value!r}; allowed: a whole number >= {least}, or {AUTO}{null}{hint}"
    return f"{_where(path)} is {value!r}; expected an integer or {AUTO}{null}"


def _check_dimensions(tune: TuneParams, problems: list[str]) -> None:
    for name, dim in tune.search_space.items():
        where = _where(f"tune.search_space.{name}")
        if dim.categories is not None:
            if dim.low is not None or dim.high is not None or not dim.categories:
                problems.append(f"{where}: give either a non-empty 'categories' list or 'low' and 'high', not both")
            continue
        if dim.low is None or dim.high is None:
            problems.append(f"{where}: needs 'low' and 'high' (or 'categories')")
            continue
        if not dim.low < dim.high:
            problems.append(f"{where}: low ({dim.low}) must be below high ({dim.high})")
        if dim.prior == "log-uniform" and dim.low <= 0:
            problems.append(f"{where}: a log-uniform prior needs low > 0 (found {dim.low})")
        if dim.type == "integer" and (dim.low != int(dim.low) or dim.high != int(dim.high)):
            problems.append(f"{where}: an integer dimension needs whole-number low and high")


def _check_linear_leaves(params: Params, problems: list[str]) -> None:
    linear = params.tune.search_space.get("linear_tree")
    if linear is None or True not in (linear.categories or []):
        return
    if params.compute.engine == "dask":
        # Distributed LightGBM fits each leaf's linear model on one machine's rows only
        # (benchmarks/README.md, "The Dask engine").
        problems.append(f"{_where('tune.search_space.linear_tree')} may pick true, which compute.engine dask "
                        "cannot train (LightGBM fits linear leaves on one worker's rows); set it to "
                        "{categories: [false]} or use compute.engine: local")
    if params.model.threads == AUTO:
        # Plain trees are the same bits with any thread count; linear leaves are not.
        problems.append(f"{_where('tune.search_space.linear_tree')} may pick true, whose models change in their "
                        "last bits with the thread count, so model.threads: auto would make every machine's results "
                        "differ; set model.threads to a number (the same on every machine) or drop linear_tree")


def _check_data(data: DataParams, problems: list[str]) -> None:
    if data.target in data.id_columns:
        problems.append(f"{_where('data.target')} '{data.target}' is also listed in data.id_columns; list it once")
    if data.categorical_columns and data.target in data.categorical_columns:
        problems.append(f"{_where('data.categorical_columns')} lists the target '{data.target}'; remove it")
    if Path(data.path).suffix.lower() not in ("", ".csv", ".parquet", ".pq"):
        problems.append(f"{_where('data.path')} is {data.path!r}; expected a .csv or .parquet file, "
                        "or a directory of parquet files")


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as read from YAML) and return typed sections."""
    sections = ", ".join(Params.model_fields)
    if raw is None:
        raise ParamsError(f"{_where('')}the file is empty; it needs the sections {sections}")
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{_where('')}the file holds {type(raw).__name__} {_short(raw)}; "
                          f"it needs a mapping of the sections {sections}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        # A union's members each report the same value: one line for them.
        raise ParamsError(*dict.fromkeys(_problem(e, raw) for e in error.errors())) from None
    problems: list[str] = []
    _check_dimensions(params.tune, problems)
    _check_linear_leaves(params, problems)
    _check_data(params.data, problems)
    if problems:
        raise ParamsError(*problems)
    return params


def load_params(path: str | Path = DEFAULT_PARAMS_PATH) -> Params:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found; run from the repository root or pass --params PATH") from None
    try:
        # YAML 1.2, as DVC reads and writes params.yaml: `Yes` and `no` stay strings. (YAML 1.1 readers
        # such as PyYAML take them for true/false, and DVC drops the quotes when `dvc exp run -S` rewrites it.)
        raw = YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    try:
        return parse_params(raw)
    except ParamsError as error:
        if str(path) != DEFAULT_PARAMS_PATH:
            error.problems = [p.replace("params.yaml:", f"{path}:", 1) for p in error.problems]
        raise
