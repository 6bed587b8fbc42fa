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

from stages.lib.core.errors import ParamsError

DEFAULT_PARAMS_PATH = "params.yaml"

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


def _sample_size(value: int | str | None, key: str) -> int | None:
    return AUTO_SAMPLE_ROWS[key] if value == AUTO else value


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _no_ids(value: Any) -> Any:
    """An empty `id_columns:` (YAML null) means no ID columns, as `[]` does."""
    return [] if value is None else value


def _doc(text: str, **constraints: Any) -> Any:
    """A field's meaning: docs/parameters.md is generated from these (python -m docs.build)."""
    return Field(description=" ".join(text.split()), **constraints)


class BaseParams(_Section):
    """Shared by every stage."""

    seed: int = _doc("Every random choice: the generated data, the split, SMOTE, folds, the search, the trees, "
                     "the baselines' bootstrap.", ge=0, le=2**32 - 1)


class ComputeParams(_Section):
    """Where the work runs; what is computed is the same on either engine (docs/scaling-out.md)."""

    engine: Literal[ENGINES] = _doc(
        "`local`: this process, and independent fits (tune's cross-validation fits, calibrate's folds, "
        "evaluate's baselines) side by side in threads, sized to the usable cores (CPU affinity, cgroup quota; "
        "`PROPENSITY_WORKERS=N` uses fewer). `dask`: a Dask cluster (`DASK_SCHEDULER_ADDRESS` or Dask's config, "
        "never this file; else a `LocalCluster` on this machine). Either engine gives the same split, "
        "preprocessor, samples, search, calibration and baselines; only the final fit differs (LightGBM's "
        "data-parallel training on Dask).", default="local")


class GenerateParams(_Section):
    """The embedded synthetic customer export (`generate` stage); unused when `data.path` is your own table."""

    rows: int = _doc("Customers in the generated table.", ge=1)
    purchase_rate: float = _doc("Share of buyers.", gt=0.0, lt=0.5)
    truth: Literal[GENERATE_TRUTHS] = _doc(
        "How purchases are drawn: `nonlinear` (saturating and interacting effects, part of the intent never "
        "exported) or `linear` (log-odds linear in seven exported columns: a logistic regression is the ideal "
        "scorer).", default="nonlinear")


class DataParams(_Section):
    """The table the pipeline learns from, and its schema (docs/own-data.md)."""

    path: Text = _doc("The table: a CSV or parquet file, or a directory of parquet files (read in name order as "
                      "one table).")
    target: Text = _doc("The label column.")
    positive_label: Union[int, bool, Text] = _doc(
        "The label value that means \"bought\": 1, true, Yes, ... (compared case-insensitively as text, so 1, "
        "1.0 and \"1\" match).")
    id_columns: Annotated[list[Text], BeforeValidator(_no_ids)] = _doc(
        "Columns that identify a customer: not features, kept in the scores. Empty (or `[]`) for a table "
        "without IDs: customers are then told apart by row number.", default=[])
    categorical_columns: Optional[list[Text]] = _doc(
        "Columns treated as categories; empty infers them (every text or true/false column that is not an ID "
        "or the target).", default=None)
    duplicate_ids: Literal[DUPLICATE_ID_POLICIES] = _doc(
        "A repeated customer ID: `warn` keeps each customer's first row (so no customer is on both sides of the "
        "split), `error` stops.", default="warn")


class PreprocessParams(_Section):
    """The split and the preprocessor, fitted on the training split only."""

    test_size: float = _doc(
        "Share of customers held out for evaluation, stratified exactly: of buyers and of non-buyers, "
        "round(test_size x their count) customers, those with the smallest seeded hashes of their ID (of their "
        "row number without ID columns), so a customer keeps its side however the table is cut into files.",
        gt=0.0, lt=1.0)
    rare_category_min_count: int = _doc(
        "Levels seen fewer times in training become `__other__`, as do levels never seen; missing values are "
        "the level `__missing__`.", default=10, ge=1)


class ResampleParams(_Section):
    """Handling the rare class: applied to training rows only, inside every cross-validation fold too."""

    method: Literal[RESAMPLE_METHODS] = _doc(
        "`none`, `class_weight` (LightGBM's `is_unbalance`, no resampling), `smote`, `smotenc`, "
        "`borderline_smote` or `adasyn` (docs/experiments.md has the comparison).")
    k_neighbors: int = _doc("Neighbours SMOTE interpolates between (ADASYN: `n_neighbors`); needs at least k + 1 "
                            "buyers in every training fold.", default=5, ge=1)
    sampling_strategy: float = _doc("Buyers per non-buyer after resampling (imbalanced-learn's float strategy).",
                                    default=1.0, gt=0.0, le=1.0)


class ModelParams(_Section):
    """Shared by tune, calibrate and train."""

    family: Literal[MODEL_FAMILIES] = _doc(
        "The model that ships: `lightgbm`, `logistic_regression`, or `auto`: both tuned, then compared on fresh "
        "folds, and the logistic regression ships unless LightGBM ranks better by more than one standard error "
        "(docs/metrics.md, \"Which model ships\").", default="auto")
    n_estimators: int = _doc("LightGBM's boosting rounds (tunable too: add it to the search space).", ge=1)
    threads: Count = _doc(
        "LightGBM threads inside one fit: `auto` (the usable cores divided among the fits running at once) or a "
        "number. Plain trees come out the same bits with any count, so `auto` changes speed, never results; "
        "linear leaves (`linear_tree`) change in their last bits, so a search space that may pick them needs a "
        "number here.", default=AUTO)


class Dimension(_Section):
    """One dimension of `tune.search_space`: a range or a list of categories."""

    low: Optional[float] = _doc("Lowest value of a range.", default=None)
    high: Optional[float] = _doc("Highest value of a range.", default=None)
    prior: Literal[PRIORS] = _doc("How a range is searched: `uniform` or `log-uniform`.", default="uniform")
    type: Literal[DIMENSION_TYPES] = _doc("`real` or `integer`.", default="real")
    categories: Optional[list[Union[Text, int, float, bool]]] = _doc(
        "The values to choose from, instead of a range.", default=None)


class TuneParams(_Section):
    """BayesSearchCV over LightGBM (and, with `model.family: auto`, a grid over the logistic regression)."""

    n_iter: int = _doc("Points the Bayesian search evaluates (the first 10 at random, then the Gaussian "
                       "process's proposals).", ge=1)
    cv_folds: int = _doc("Stratified folds per point, on the original training split with the resampler inside "
                         "each fold.", ge=2)
    # Keys are LightGBM parameter names; a YAML key such as 1 is read as "1".
    search_space: dict[Annotated[str, BeforeValidator(str)], Dimension] = _doc(
        "LightGBM parameters to search, each a Dimension: `{low, high, prior, type}` or `{categories: [...]}`; "
        "any `LGBMClassifier` argument. When the best point sits on an end of a range, `metrics/tune.json` "
        "lists it under `edges` and the stage names the range to widen.", min_length=1)
    scoring: Literal[TUNE_SCORINGS] = _doc("What the search maximises.", default="average_precision")
    n_points: int = _doc(
        "Candidates the search proposes per step; n_points x cv_folds fits run side by side. A committed value: "
        "it changes the search, so it is never the machine's.", default=1, ge=1)
    early_stopping_rounds: Optional[int] = _doc(
        "Stop each cross-validation fit after this many rounds without improvement on 10 % of its training fold "
        "(empty: off, always model.n_estimators trees); the best candidate's round count becomes n_estimators "
        "for calibrate and train.", default=None, ge=1)
    sample_rows: SampleRows = _doc(
        "Tune on a stratified sample of the training split: `auto` is every row up to 200,000 and a sample of "
        "200,000 above, a number is that many, empty is every row. The same sample on either engine.",
        default=AUTO)

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "tune.sample_rows")


class CalibrationParams(_Section):
    """Maps scores to probabilities, fitted on out-of-fold predictions of the training split."""

    method: Literal[CALIBRATION_METHODS] = _doc("`none`, `sigmoid` (Platt) or `isotonic`.")
    cv_folds: int = _doc("Folds for the out-of-fold predictions.", default=3, ge=2)
    sample_rows: SampleRows = _doc(
        "Out-of-fold predictions on a stratified sample, as tune.sample_rows: `auto` is every row up to "
        "1,000,000.", default=AUTO)

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "calibration.sample_rows")


class ThresholdParams(_Section):
    """The decision threshold (`will_buy`), chosen on out-of-fold predictions (docs/metrics.md)."""

    objective: Literal[THRESHOLD_OBJECTIVES] = _doc(
        "`f1` (maximise F1), `min_precision` (the best recall with at least threshold.min_precision), "
        "`top_fraction` (flag that share of customers: a contact budget) or `profit` (the most profitable "
        "threshold for the costs below).")
    min_precision: float = _doc("objective min_precision: the precision to reach.", default=0.5, gt=0.0, le=1.0)
    top_fraction: float = _doc("objective top_fraction: the share of customers to flag.", default=0.1, gt=0.0,
                               le=1.0)
    contact_cost: float = _doc("objective profit: what contacting one customer costs.", default=1.0, gt=0.0)
    buyer_value: float = _doc("objective profit: what one buyer reached is worth, in the same currency; the "
                              "threshold maximises buyer_value x buyers reached - contact_cost x contacts.",
                              default=20.0, gt=0.0)


class EvaluateParams(_Section):
    """What evaluate measures on the untouched test split."""

    top_fraction: float = _doc("Where precision at k, lift and capture rate are read: the top of the list.",
                               default=0.1, gt=0.0, le=1.0)
    calibration_bins: int = _doc("Bins (equal counts) of the calibration curve.", default=10, ge=2)
    baseline_sample_rows: SampleRows = _doc(
        "The baselines' training rows (logistic regression, default LightGBM), a stratified sample as "
        "tune.sample_rows: `auto` is every row up to 1,000,000.", default=AUTO)

    @property
    def baseline_sample_size(self) -> int | None:
        return _sample_size(self.baseline_sample_rows, "evaluate.baseline_sample_rows")


class Params(_Section):
    """params.yaml: every stage reads its own sections (dvc.yaml lists which)."""

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
