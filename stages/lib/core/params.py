"""Load params.yaml once, check every key, and hand out typed, frozen sections.

The sections (stages.lib.core.params_sections) are pydantic models: strict types
(a YAML string "5" is not an integer, true is not an integer; an integer is
accepted for a number), ranges, choices and unknown keys. Every problem is
collected and reported together, one line each, with its full key path, the value
found and what is allowed (stages.lib.core.params_problems), so a user fixes
params.yaml in one pass instead of one error per run.

Only the stages' `main`s hold a whole Params: they hand each library function the
sections or values it reads, and dvc.yaml lists those keys for the stage
(tests/test_params_reads.py checks both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML, YAMLError

from stages.lib.core.errors import ParamsError
from stages.lib.core.params_features import FeaturesParams
from stages.lib.core.params_model import (
    CalibrationParams,
    EvaluateParams,
    ModelParams,
    ResampleParams,
    ThresholdParams,
    TuneParams,
)
from stages.lib.core.params_problems import located, problem, short
from stages.lib.core.params_sections import BaseParams, ComputeParams, DataParams, GenerateParams, PreprocessParams
from stages.lib.core.params_types import AUTO, Section

DEFAULT_PARAMS_PATH = "params.yaml"


class Params(Section):
    """params.yaml: every stage reads its own sections (dvc.yaml lists which)."""

    base: BaseParams
    compute: ComputeParams = ComputeParams()
    generate: GenerateParams
    data: DataParams
    features: FeaturesParams = FeaturesParams()
    preprocess: PreprocessParams
    resample: ResampleParams
    model: ModelParams
    tune: TuneParams
    calibration: CalibrationParams
    threshold: ThresholdParams
    evaluate: EvaluateParams



def _check_dimensions(tune: TuneParams, problems: list[str]) -> None:
    for name, dim in tune.search_space.items():
        where = located(f"tune.search_space.{name}")
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
        if dim.of_rows:
            if dim.type != "integer" or not 0 < dim.low < dim.high <= 1:
                problems.append(f"{where}: of_rows needs type integer and low and high shares of the rows "
                                f"(0 < low < high <= 1; found {dim.low} and {dim.high}, type {dim.type})")
        elif dim.type == "integer" and (dim.low != int(dim.low) or dim.high != int(dim.high)):
            problems.append(f"{where}: an integer dimension needs whole-number low and high")


def _check_linear_leaves(params: Params, problems: list[str]) -> None:
    linear = params.tune.search_space.get("linear_tree")
    if linear is None or True not in (linear.categories or []):
        return
    if params.compute.engine == "dask":
        # Distributed LightGBM fits each leaf's linear model on one machine's rows only
        # (benchmarks/README.md, "The Dask engine").
        problems.append(f"{located('tune.search_space.linear_tree')} may pick true, which compute.engine dask "
                        "cannot train (LightGBM fits linear leaves on one worker's rows); set it to "
                        "{categories: [false]} or use compute.engine: local")
    if params.model.threads == AUTO:
        # Plain trees are the same bits with any thread count; linear leaves are not.
        problems.append(f"{located('tune.search_space.linear_tree')} may pick true, whose models change in their "
                        "last bits with the thread count, so model.threads: auto would make every machine's results "
                        "differ; set model.threads to a number (the same on every machine) or drop linear_tree")


def _check_data(data: DataParams, problems: list[str]) -> None:
    if data.target in data.id_columns:
        problems.append(f"{located('data.target')} '{data.target}' is also listed in data.id_columns; list it once")
    if data.time_column is not None:
        for key, columns in (("data.id_columns", data.id_columns), ("data.categorical_columns",
                                                                     data.categorical_columns or [])):
            if data.time_column in columns:
                problems.append(f"{located('data.time_column')} '{data.time_column}' is also listed in {key}; "
                                "a snapshot date is neither: remove it there")
        if data.time_column == data.target:
            problems.append(f"{located('data.time_column')} is the target '{data.target}'; name the date column")
    if data.categorical_columns and data.target in data.categorical_columns:
        problems.append(f"{located('data.categorical_columns')} lists the target '{data.target}'; remove it")
    if Path(data.path).suffix.lower() not in ("", ".csv", ".parquet", ".pq"):
        problems.append(f"{located('data.path')} is {data.path!r}; expected a .csv or .parquet file, "
                        "or a directory of parquet files")


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as read from YAML) and return typed sections."""
    sections = ", ".join(Params.model_fields)
    if raw is None:
        raise ParamsError(f"{located('')}the file is empty; it needs the sections {sections}")
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{located('')}the file holds {type(raw).__name__} {short(raw)}; "
                          f"it needs a mapping of the sections {sections}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        # A union's members each report the same value: one line for them.
        raise ParamsError(*dict.fromkeys(problem(e, raw, Params) for e in error.errors())) from None
    problems: list[str] = []
    _check_dimensions(params.tune, problems)
    _check_linear_leaves(params, problems)
    _check_data(params.data, problems)
    problems += [f"{located('')}{line}" for line in params.features.problems()]
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
