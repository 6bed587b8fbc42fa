"""Check a customer table against the `data:` section of params.yaml.

One check for every table the pipeline reads: the training export (in
preprocess) and a scoring input (in predict). Problems are DataErrors whose
message names the column, what was found and what to change.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.lib.errors import DataError
from stages.lib.params import DataParams

# Columns of the tables passed between stages: the 0/1 label (1: bought) and,
# in the resampled training table, the flag of rows SMOTE made.
LABEL = "__label__"
SYNTHETIC = "__synthetic__"

# A text column is taken for a numeric column with stray text when at least
# this share of its values parse as numbers.
NUMERIC_TEXT_SHARE = 0.9


@dataclass(frozen=True)
class TableSchema:
    """The columns of a customer table, by role, as found by `check_training_table`."""

    id_columns: list[str]
    numeric_columns: list[str]
    categorical_columns: list[str]

    @property
    def feature_columns(self) -> list[str]:
        return self.numeric_columns + self.categorical_columns


def _label_key(value: object) -> str:
    """Compare labels across YAML and file types: 1 == 1.0 == "1", True == "true"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def _is_categorical(series: pd.Series) -> bool:
    return (
        _is_text(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(series)
    )


def _text_in_numeric(series: pd.Series) -> tuple[int, list[str]] | None:
    """If a text column is mostly numbers, return (bad row count, examples)."""
    present = series.dropna()
    if present.empty:
        return None
    parsed = pd.to_numeric(present, errors="coerce")
    numeric_share = parsed.notna().mean()
    if numeric_share < NUMERIC_TEXT_SHARE or numeric_share == 1.0:
        return None
    bad = present[parsed.isna()]
    return len(bad), [str(v) for v in bad.unique()[:3]]


def _header(frame: pd.DataFrame, limit: int = 12) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _did_you_mean(name: str, frame: pd.DataFrame) -> str:
    """A close column name (a renamed or re-cased header), as a hint."""
    names = {str(c).lower(): str(c) for c in frame.columns}
    close = difflib.get_close_matches(name.lower(), list(names), n=1, cutoff=0.75)
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def binary_target(frame: pd.DataFrame, data: DataParams, source: str) -> np.ndarray:
    """The target as 0/1 int8, with `positive_label` as 1; checks it is binary and complete."""
    target = data.target
    if target not in frame.columns:
        raise DataError(
            f"{source}: target column '{target}' (data.target) not found{_did_you_mean(target, frame)}; "
            f"set data.target to one of: {_header(frame)}"
        )
    labels = frame[target]
    missing = int(labels.isna().sum())
    if missing:
        raise DataError(
            f"{source}: target '{target}' is missing in {missing:,} rows; drop or label those rows"
        )
    # Normalise each distinct label once, not every row: a million-row export has two labels.
    codes, distinct = pd.factorize(labels)
    distinct_keys = np.array([_label_key(v) for v in distinct], dtype=object)
    values = sorted(set(distinct_keys))
    if len(values) < 2:
        raise DataError(
            f"{source}: target '{target}' has one class only ({values[0]!r}); "
            "the table needs both buyers and non-buyers"
        )
    if len(values) > 2:
        shown = ", ".join(map(repr, values[:6]))
        raise DataError(
            f"{source}: target '{target}' has {len(values)} values ({shown}); it must have exactly two"
        )
    positive = _label_key(data.positive_label)
    if positive not in values:
        raise DataError(
            f"{source}: data.positive_label {data.positive_label!r} is not a value of '{target}' "
            f"(found {values[0]!r} and {values[1]!r}); set data.positive_label to the one that means 'bought'"
        )
    return (distinct_keys[codes] == positive).astype(np.int8)


def check_training_table(frame: pd.DataFrame, data: DataParams, source: str) -> TableSchema:
    """Check a labelled customer table; return its columns by role."""
    if frame.empty:
        raise DataError(f"{source}: the table has a header but no rows; export it again with data")
    _check_configured_columns(frame, data, source)
    binary_target(frame, data, source)

    roles = set(data.id_columns) | {data.target}
    candidates = [c for c in frame.columns if c not in roles]
    if not candidates:
        raise DataError(f"{source}: no feature columns besides the ID and target columns")

    empty = [c for c in [*data.id_columns, *candidates] if frame[c].isna().all()]
    if empty:
        raise DataError(
            f"{source}: column(s) {', '.join(map(repr, empty))} {'is' if len(empty) == 1 else 'are'} "
            "entirely empty; drop them from the export "
            "(and from params.yaml's data section if listed there) or fill them"
        )
    for column in data.id_columns:
        missing = int(frame[column].isna().sum())
        if missing:
            raise DataError(
                f"{source}: ID column '{column}' is empty in {missing:,} rows; "
                "give every customer an ID or drop those rows"
            )

    if data.categorical_columns is not None:
        categorical = [c for c in candidates if c in set(data.categorical_columns)]
    else:
        categorical = [c for c in candidates if _is_categorical(frame[c])]
    numeric = [c for c in candidates if c not in set(categorical)]

    for column in numeric:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        stray = _text_in_numeric(series) if _is_text(series) else None
        if stray is not None:
            count, examples = stray
            raise DataError(
                f"{source}: numeric column '{column}' has text in {count:,} rows "
                f"(e.g. {', '.join(map(repr, examples))}); clean those values or list "
                f"'{column}' under data.categorical_columns"
            )
        raise DataError(
            f"{source}: column '{column}' is not numeric ({series.dtype}); list it under "
            "data.categorical_columns, or drop data.categorical_columns to infer them"
        )

    _check_duplicate_ids(frame, data, source)
    return TableSchema(list(data.id_columns), numeric, categorical)


def _check_configured_columns(frame: pd.DataFrame, data: DataParams, source: str) -> None:
    """Every column params.yaml names must be in the header; all absent ones reported at once."""
    header = set(frame.columns)
    problems = []
    for key, columns in (("data.id_columns", data.id_columns),
                         ("data.categorical_columns", data.categorical_columns or [])):
        absent = [c for c in columns if c not in header]
        if absent:
            hints = "".join(_did_you_mean(c, frame) for c in absent)
            problems.append(
                f"{source}: column(s) {', '.join(map(repr, absent))} named in {key} not found{hints} "
                f"(the file has: {_header(frame)}); fix {key} in params.yaml or the file's header"
            )
    if problems:
        raise DataError(*problems)


def _check_duplicate_ids(frame: pd.DataFrame, data: DataParams, source: str) -> None:
    if not data.id_columns:
        return
    duplicated = int(frame.duplicated(subset=list(data.id_columns)).sum())
    if not duplicated:
        return
    message = (
        f"{source}: {duplicated:,} rows repeat a customer ID ({', '.join(data.id_columns)}); "
        "deduplicate the export"
    )
    if data.duplicate_ids == "error":
        raise DataError(message + " or set data.duplicate_ids: warn")
    print(f"warning: {message}, or set data.duplicate_ids: error to stop on this", file=sys.stderr)


def check_scoring_table(frame: pd.DataFrame, required_columns: list[str], source: str) -> list[str]:
    """Check a scoring input has every column the model needs; return the extra columns."""
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) the model needs: {', '.join(missing)}; "
            "add them to the input (values may be empty)"
        )
    return [c for c in frame.columns if c not in set(required_columns)]


def categorical_columns_of(frame: pd.DataFrame) -> list[str]:
    """The columns of a processed table that are categories (the preprocessor makes them so)."""
    return [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]


def split_features(frame: pd.DataFrame, id_columns: list[str],
                   source: str = "input table") -> tuple[pd.DataFrame, np.ndarray]:
    """(features, 0/1 labels) of a table written by preprocess or resample."""
    if LABEL not in frame.columns:
        raise DataError(
            f"{source}: no '{LABEL}' column, so it was not written by preprocess or resample; "
            "pass the stage's own input (see dvc.yaml) or run `dvc repro`"
        )
    drop = [c for c in (*id_columns, LABEL, SYNTHETIC) if c in frame.columns]
    return frame.drop(columns=drop), frame[LABEL].to_numpy(np.int8)
