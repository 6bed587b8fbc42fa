"""Load params.yaml once, check every key, and hand out typed, frozen sections.

Every problem (unknown key, wrong type, value out of range) is collected and
reported together with its full key path, the value found and what is allowed,
so a user fixes params.yaml in one pass instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.lib.errors import ParamsError

DEFAULT_PARAMS_PATH = "params.yaml"

RESAMPLE_METHODS = ("none", "class_weight", "smote", "smotenc", "borderline_smote", "adasyn")
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")
THRESHOLD_OBJECTIVES = ("f1", "min_precision", "top_fraction")
PRIORS = ("uniform", "log-uniform")
DIMENSION_TYPES = ("real", "integer")
DUPLICATE_ID_POLICIES = ("warn", "error")
# Scorers that rank customers by probability; BayesSearchCV maximises the one chosen.
TUNE_SCORINGS = ("average_precision", "roc_auc", "neg_log_loss", "neg_brier_score", "f1", "recall", "precision")


def _rule(**constraints: Any) -> dict:
    return {"rule": constraints}


@dataclass(frozen=True)
class BaseParams:
    seed: int = field(metadata=_rule(min=0, max=2**32 - 1))


@dataclass(frozen=True)
class GenerateParams:
    rows: int = field(metadata=_rule(min=1))
    purchase_rate: float = field(metadata=_rule(gt=0.0, lt=0.5))


@dataclass(frozen=True)
class DataParams:
    path: str
    target: str
    positive_label: typing.Union[int, bool, str]
    id_columns: list[str] = field(default_factory=list)
    # None: every string, boolean or categorical column that is not an ID or the target.
    categorical_columns: typing.Optional[list[str]] = None
    duplicate_ids: str = field(default="warn", metadata=_rule(choices=DUPLICATE_ID_POLICIES))


@dataclass(frozen=True)
class PreprocessParams:
    test_size: float = field(metadata=_rule(gt=0.0, lt=1.0))
    rare_category_min_count: int = field(default=10, metadata=_rule(min=1))


@dataclass(frozen=True)
class ResampleParams:
    method: str = field(metadata=_rule(choices=RESAMPLE_METHODS))
    k_neighbors: int = field(default=5, metadata=_rule(min=1))
    # Minority rows per majority row after resampling, as imbalanced-learn's float strategy.
    sampling_strategy: float = field(default=1.0, metadata=_rule(gt=0.0, max=1.0))


@dataclass(frozen=True)
class ModelParams:
    n_estimators: int = field(metadata=_rule(min=1))
    threads: int = field(default=1, metadata=_rule(min=1))


@dataclass(frozen=True)
class Dimension:
    low: typing.Optional[float] = None
    high: typing.Optional[float] = None
    prior: str = field(default="uniform", metadata=_rule(choices=PRIORS))
    type: str = field(default="real", metadata=_rule(choices=DIMENSION_TYPES))
    categories: typing.Optional[list[typing.Union[str, int, float, bool]]] = None


@dataclass(frozen=True)
class TuneParams:
    n_iter: int = field(metadata=_rule(min=1))
    cv_folds: int = field(metadata=_rule(min=2))
    search_space: dict[str, Dimension]
    scoring: str = field(default="average_precision", metadata=_rule(choices=TUNE_SCORINGS))
    # Parallel cross-validation fits (processes); they share model.threads between them.
    n_jobs: int = field(default=1, metadata=_rule(min=1))
    # Candidates evaluated per search step; with n_jobs > 1, n_points * cv_folds
    # fits share the workers, so 2 * 3 folds keep 2 workers busy where 1 * 3 idles one.
    n_points: int = field(default=1, metadata=_rule(min=1))
    # Stop each cross-validation fit after this many trees without improvement on a
    # held-out slice of its training fold (None: always model.n_estimators trees).
    early_stopping_rounds: typing.Optional[int] = field(default=None, metadata=_rule(min=1))
    # Tune on a stratified subsample of the training split (None: all rows).
    sample_rows: typing.Optional[int] = field(default=None, metadata=_rule(min=10))


@dataclass(frozen=True)
class CalibrationParams:
    method: str = field(metadata=_rule(choices=CALIBRATION_METHODS))
    cv_folds: int = field(default=3, metadata=_rule(min=2))
    sample_rows: typing.Optional[int] = field(default=None, metadata=_rule(min=10))


@dataclass(frozen=True)
class ThresholdParams:
    objective: str = field(metadata=_rule(choices=THRESHOLD_OBJECTIVES))
    min_precision: float = field(default=0.5, metadata=_rule(gt=0.0, max=1.0))
    top_fraction: float = field(default=0.1, metadata=_rule(gt=0.0, max=1.0))


@dataclass(frozen=True)
class EvaluateParams:
    top_fraction: float = field(default=0.1, metadata=_rule(gt=0.0, max=1.0))
    calibration_bins: int = field(default=10, metadata=_rule(min=2))


@dataclass(frozen=True)
class Params:
    base: BaseParams
    generate: GenerateParams
    data: DataParams
    preprocess: PreprocessParams
    resample: ResampleParams
    model: ModelParams
    tune: TuneParams
    calibration: CalibrationParams
    threshold: ThresholdParams
    evaluate: EvaluateParams


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " or ".join(names) + (" or null" if optional else "")
    if origin is list:
        item = typing.get_args(annotation)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(item, 'values')}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(annotation, str(annotation))


def _where(path: str) -> str:
    return f"params.yaml: {path}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _convert(value: Any, annotation: Any, path: str, problems: list[str]) -> Any:
    """Check `value` against a type annotation; return the converted value or None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            converted = _convert(value, arg, path, trial)
            if not trial:
                return converted
        problems.append(f"{_where(path)} is {value!r}; expected {_type_name(annotation)}")
        return None
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{_where(path)} is {value!r}; expected {_type_name(annotation)}")
            return None
        (item_type,) = typing.get_args(annotation)
        return [_convert(item, item_type, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping) or not value:
            problems.append(f"{_where(path)} is {value!r}; expected a non-empty mapping")
            return None
        _, value_type = typing.get_args(annotation)
        return {str(k): _convert(v, value_type, f"{path}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, path, problems)
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif annotation is str:
        ok = isinstance(value, str) and value != ""
    else:
        ok = isinstance(value, annotation)
    if not ok:
        expected = "a non-empty string" if value == "" else _type_name(annotation)
        problems.append(f"{_where(path)} is {value!r}; expected {expected}")
        return None
    return value


def _check_rule(value: Any, rule: Mapping[str, Any], path: str, problems: list[str]) -> None:
    if value is None:
        return
    if "choices" in rule and value not in rule["choices"]:
        allowed = ", ".join(map(str, rule["choices"]))
        close = difflib.get_close_matches(str(value), list(map(str, rule["choices"])), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"{_where(path)} is {value!r}; allowed: {allowed}{hint}")
    bounds = [("min", ">=", lambda v, b: v >= b), ("max", "<=", lambda v, b: v <= b),
              ("gt", ">", lambda v, b: v > b), ("lt", "<", lambda v, b: v < b)]
    for key, symbol, holds in bounds:
        if key in rule and not holds(value, rule[key]):
            problems.append(f"{_where(path)} is {value!r}; it must be {symbol} {rule[key]}")


def _build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(f"{_where(path)} is {raw!r}; expected a mapping of keys")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            problems.append(f"{_where(f'{path}.{key}')}: unknown key{hint}")
    values = {}
    for name, spec in fields.items():
        key_path = f"{path}.{name}"
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                problems.append(f"{_where(key_path)} is missing; add it ({_type_name(hints[name])})")
            continue
        value = _convert(raw[name], hints[name], key_path, problems)
        _check_rule(value, spec.metadata.get("rule", {}), key_path, problems)
        values[name] = value
    if any(p.startswith(_where(path + ".")) for p in problems):
        return None
    return cls(**values)


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


def _check_data(data: DataParams, problems: list[str]) -> None:
    if data.target in data.id_columns:
        problems.append(f"{_where('data.target')} '{data.target}' is also listed in data.id_columns; list it once")
    if data.categorical_columns and data.target in data.categorical_columns:
        problems.append(f"{_where('data.categorical_columns')} lists the target '{data.target}'; remove it")
    if Path(data.path).suffix.lower() not in (".csv", ".parquet", ".pq"):
        problems.append(f"{_where('data.path')} is {data.path!r}; expected a .csv or .parquet file")


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as read from YAML) and return typed sections."""
    sections = ", ".join(f.name for f in dataclasses.fields(Params))
    if raw is None:
        raise ParamsError(f"{_where('')}the file is empty; it needs the sections {sections}")
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{_where('')}the file holds {type(raw).__name__} {_short(raw)}; "
                          f"it needs a mapping of the sections {sections}")
    problems: list[str] = []
    params = _build(Params, raw, "", problems)
    # _build prefixes paths with "."; strip it so users read `tune.n_iter`, not `.tune.n_iter`.
    problems = [p.replace("params.yaml: .", "params.yaml: ", 1) for p in problems]
    if params is not None:
        _check_dimensions(params.tune, problems)
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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    try:
        return parse_params(raw)
    except ParamsError as error:
        if str(path) != DEFAULT_PARAMS_PATH:
            error.problems = [p.replace("params.yaml:", f"{path}:", 1) for p in error.problems]
        raise
