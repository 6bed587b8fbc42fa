"""What the check of a customer table needs to know of it, gathered in one pass per partition.

`TableFacts.of` reads a pandas table (a whole table, or one partition of a
partitioned one); `combine` adds up partitions' facts, so a table too big for one
process is checked (stages.lib.data.schema) with the same rules and messages as a
small one. `NumericText` is the one reading of a text column as numbers: the
check counts its stray text, the preprocessor refuses it at transform time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from stages.lib.core.params_sections import DataParams


def is_text(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


@dataclass(frozen=True)
class NumericText:
    """A text column read as numbers: how many values are present, how many parse, the first that do not."""

    present: int
    parsed: int
    examples: tuple[str, ...]

    @property
    def unparsed(self) -> int:
        return self.present - self.parsed

    @classmethod
    def combine(cls, parts: list[NumericText]) -> NumericText:
        examples = tuple(dict.fromkeys(v for part in parts for v in part.examples))[:3]
        return cls(sum(p.present for p in parts), sum(p.parsed for p in parts), examples)


def as_numbers(series: pd.Series) -> tuple[pd.Series, NumericText]:
    """`series` as numbers (NaN where missing or not a number), and what its text held."""
    parsed = pd.to_numeric(series, errors="coerce")
    bad = series[parsed.isna() & series.notna()]
    present = int(series.notna().sum())
    return parsed, NumericText(present, present - len(bad), tuple(str(v) for v in bad.unique()[:3]))


@dataclass(frozen=True)
class TableFacts:
    """What the check of a training table needs to know of it."""

    header: pd.DataFrame                 # no rows: the columns and their dtypes
    rows: int
    non_null: dict[str, int]
    target_values: list                  # distinct present values of data.target, in order of appearance
    numeric_text: dict[str, NumericText]  # text columns that may be numeric
    duplicated_ids: int = 0

    @classmethod
    def of(cls, frame: pd.DataFrame, data: DataParams, count_duplicates: bool = True) -> TableFacts:
        numeric_text = {c: as_numbers(frame[c])[1] for c in _text_columns_that_may_be_numeric(frame, data)}
        keys = list(data.id_columns) + ([data.time_column] if data.time_column is not None else [])
        has_ids = data.id_columns and set(keys) <= set(frame.columns)
        return cls(
            header=_empty_like(frame),
            rows=len(frame),
            non_null={str(c): int(n) for c, n in frame.count().items()},
            target_values=list(pd.unique(frame[data.target].dropna())) if data.target in frame.columns else [],
            numeric_text=numeric_text,
            duplicated_ids=int(frame.duplicated(subset=keys).sum())
            if has_ids and count_duplicates else 0,
        )

    @classmethod
    def combine(cls, parts: list[TableFacts], duplicated_ids: int = 0) -> TableFacts:
        """The facts of the table whose partitions, in order, have `parts` as facts."""
        first = parts[0]
        return cls(
            header=first.header,
            rows=sum(part.rows for part in parts),
            non_null={c: sum(part.non_null[c] for part in parts) for c in first.non_null},
            target_values=list(dict.fromkeys(v for part in parts for v in part.target_values)),
            numeric_text={c: NumericText.combine([part.numeric_text[c] for part in parts]) for c in first.numeric_text},
            duplicated_ids=duplicated_ids,
        )


def _empty_like(frame: pd.DataFrame) -> pd.DataFrame:
    """No rows, the same columns and dtypes, and nothing of `frame`'s memory (a zero-row slice of an
    Arrow-backed column keeps its whole buffer alive, even copied)."""
    empty = pd.DataFrame({i: pd.Series([], dtype=dtype) for i, dtype in enumerate(frame.dtypes)})
    empty.columns = frame.columns
    return empty


def _text_columns_that_may_be_numeric(frame: pd.DataFrame, data: DataParams) -> list[str]:
    """Text columns the check treats as numeric: not an ID or the target, and not listed as categorical
    (with data.categorical_columns unset, text columns are categorical)."""
    if data.categorical_columns is None:
        return []
    roles = set(data.id_columns) | {data.target, data.time_column} | set(data.categorical_columns)
    return [c for c in frame.columns if c not in roles and is_text(frame[c])]
