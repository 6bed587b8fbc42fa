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

from stages.lib.core.errors import DataError
from stages.lib.core.params_sections import DataParams
from stages.lib.data.facts import NumericText, TableFacts, is_text

# Columns of the tables passed between stages: the 0/1 label (1: bought) and,
# in the resampled training table, the flag of rows SMOTE made.
LABEL = "__label__"
SYNTHETIC = "__synthetic__"
# In the processed splits of a dated table (data.time_column): each row's snapshot date, never a feature.
SNAPSHOT = "__snapshot__"

# A text column is taken for a numeric column with stray text when at least
# this share of its values parse as numbers.
NUMERIC_TEXT_SHARE = 0.9


@dataclass(frozen=True)
class TableSchema:
    """The columns of a customer table, by role, as found by `check_training_table`."""

    id_columns: list[str]
    numeric_columns: list[str]
    categorical_columns: list[str]
    time_column: str | None = None

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


def _is_categorical(series: pd.Series) -> bool:
    return (
        is_text(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(series)
    )


def text_in_numbers(source: str, column: str, text: NumericText, fix: str) -> DataError:
    """The one message for text in a numeric column, at the check of a table and when a preprocessor reads one."""
    return DataError(f"{source}: numeric column '{column}' has text in {text.unparsed:,} rows "
                     f"(e.g. {', '.join(map(repr, text.examples))}); {fix}")


def _header(frame: pd.DataFrame, limit: int = 12) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _did_you_mean(name: str, frame: pd.DataFrame) -> str:
    """A close column name (a renamed or re-cased header), as a hint."""
    names = {str(c).lower(): str(c) for c in frame.columns}
    close = difflib.get_close_matches(name.lower(), list(names), n=1, cutoff=0.75)
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def _positive_key(values: list, missing: int, data: DataParams, source: str, header: pd.DataFrame) -> str:
    """Check the target column is complete and binary, holding data.positive_label; return its key."""
    target = data.target
    if target not in header.columns:
        raise DataError(
            f"{source}: target column '{target}' (data.target) not found{_did_you_mean(target, header)}; "
            f"set data.target to one of: {_header(header)}"
        )
    if missing:
        raise DataError(
            f"{source}: target '{target}' is missing in {missing:,} rows; drop or label those rows"
        )
    keys = sorted({_label_key(v) for v in values})
    if len(keys) < 2:
        raise DataError(
            f"{source}: target '{target}' has one class only ({keys[0]!r}); "
            "the table needs both buyers and non-buyers"
        )
    if len(keys) > 2:
        shown = ", ".join(map(repr, keys[:6]))
        raise DataError(
            f"{source}: target '{target}' has {len(keys)} values ({shown}); it must have exactly two"
        )
    positive = _label_key(data.positive_label)
    if positive not in keys:
        raise DataError(
            f"{source}: data.positive_label {data.positive_label!r} is not a value of '{target}' "
            f"(found {keys[0]!r} and {keys[1]!r}); set data.positive_label to the one that means 'bought'"
        )
    return positive


def target_labels(labels: pd.Series, positive_key: str) -> np.ndarray:
    """0/1 int8 labels, 1 where the value's key is `positive_key` (from a checked target column)."""
    # Normalise each distinct label once, not every row: a million-row export has two labels.
    codes, distinct = pd.factorize(labels)
    distinct_keys = np.array([_label_key(v) for v in distinct], dtype=object)
    return (distinct_keys[codes] == positive_key).astype(np.int8)


def positive_key_of(facts: TableFacts, data: DataParams, source: str) -> str:
    """The checked target's key for data.positive_label, from a table's facts."""
    missing = facts.rows - facts.non_null.get(data.target, 0)
    return _positive_key(facts.target_values, missing, data, source, facts.header)


def binary_target(frame: pd.DataFrame, data: DataParams, source: str) -> np.ndarray:
    """The target as 0/1 int8, with `positive_label` as 1; checks it is binary and complete."""
    present = frame[data.target].dropna() if data.target in frame.columns else pd.Series([], dtype=object)
    positive = _positive_key(list(pd.unique(present)), len(frame) - len(present), data, source, frame)
    return target_labels(frame[data.target], positive)


def check_training_table(frame: pd.DataFrame, data: DataParams, source: str) -> TableSchema:
    """Check a labelled customer table; return its columns by role."""
    return check_table_facts(TableFacts.of(frame, data), data, source)


def check_table_facts(facts: TableFacts, data: DataParams, source: str) -> TableSchema:
    """Check a labelled customer table from its facts; return its columns by role."""
    header = facts.header
    if facts.rows == 0:
        raise DataError(f"{source}: the table has a header but no rows; export it again with data")
    _check_configured_columns(header, data, source)
    positive_key_of(facts, data, source)

    roles = set(data.id_columns) | {data.target} | ({data.time_column} if data.time_column is not None else set())
    candidates = [c for c in header.columns if c not in roles]
    if not candidates:
        raise DataError(f"{source}: no feature columns besides the ID and target columns")

    empty = [c for c in [*data.id_columns, *candidates] if facts.non_null[c] == 0]
    if empty:
        raise DataError(
            f"{source}: column(s) {', '.join(map(repr, empty))} {'is' if len(empty) == 1 else 'are'} "
            "entirely empty; drop them from the export "
            "(and from params.yaml's data section if listed there) or fill them"
        )
    for column in data.id_columns:
        missing = facts.rows - facts.non_null[column]
        if missing:
            raise DataError(
                f"{source}: ID column '{column}' is empty in {missing:,} rows; "
                "give every customer an ID or drop those rows"
            )

    if data.categorical_columns is not None:
        categorical = [c for c in candidates if c in set(data.categorical_columns)]
    else:
        categorical = [c for c in candidates if _is_categorical(header[c])]
    numeric = [c for c in candidates if c not in set(categorical)]

    for column in numeric:
        series = header[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        text = facts.numeric_text.get(column)
        # Mostly numbers with some text: stray text in a numeric column; mostly text: a categorical column.
        if text is not None and text.present and NUMERIC_TEXT_SHARE <= text.parsed / text.present < 1.0:
            raise text_in_numbers(source, column, text, f"clean those values or list '{column}' under "
                                                        "data.categorical_columns")
        raise DataError(
            f"{source}: column '{column}' is not numeric ({series.dtype}); list it under "
            "data.categorical_columns, or drop data.categorical_columns to infer them"
        )

    _check_duplicate_ids(facts.duplicated_ids, data, source)
    return TableSchema(list(data.id_columns), numeric, categorical, data.time_column)


def _check_configured_columns(frame: pd.DataFrame, data: DataParams, source: str) -> None:
    """Every column params.yaml names must be in the header; all absent ones reported at once."""
    header = set(frame.columns)
    problems = []
    for key, columns in (("data.id_columns", data.id_columns),
                         ("data.categorical_columns", data.categorical_columns or []),
                         ("data.time_column", [data.time_column] if data.time_column is not None else [])):
        absent = [c for c in columns if c not in header]
        if absent:
            hints = "".join(_did_you_mean(c, frame) for c in absent)
            problems.append(
                f"{source}: column(s) {', '.join(map(repr, absent))} named in {key} not found{hints} "
                f"(the file has: {_header(frame)}); fix {key} in params.yaml or the file's header"
            )
    if problems:
        raise DataError(*problems)


def _check_duplicate_ids(duplicated: int, data: DataParams, source: str) -> None:
    if not data.id_columns or not duplicated:
        return
    keys = ", ".join(data.id_columns) + (f" and {data.time_column}" if data.time_column is not None else "")
    what = "a customer ID and snapshot date" if data.time_column is not None else "a customer ID"
    message = f"{source}: {duplicated:,} rows repeat {what} ({keys}); deduplicate the export"
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
    return frame[feature_columns_of(frame, id_columns)], frame[LABEL].to_numpy(np.int8)


def feature_columns_of(frame: pd.DataFrame, id_columns: list[str]) -> list[str]:
    """The model's input columns of a table written by preprocess or resample: all but IDs, label and flag."""
    return [c for c in frame.columns if c not in {*id_columns, LABEL, SYNTHETIC, SNAPSHOT}]
