"""The customer preprocessor: missing values and categorical encoding, fitted on training rows.

It is a scikit-learn transformer saved by `preprocess` and loaded by `predict`, so
new customers get exactly the transform the model was trained on.

- Numeric columns: missing values become the training median, plus a 0/1
  `<column>__missing` indicator for every column that had gaps in training, so
  the model still sees that the value was absent. Stored as float32.
- Categorical columns: pandas categoricals with a fixed set of levels, the
  levels seen at least `rare_category_min_count` times in training, plus
  `__missing__` and `__other__` (rare in training or never seen). LightGBM
  splits on them natively; the fixed levels keep codes identical at scoring.

It also keeps every input feature's distribution on the training split
(`drift_reference_`, stages/lib/data/drift.py), so scoring can say when new
customers no longer look like the ones the model learned from.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import BaseEstimator, TransformerMixin

from stages.lib.data import drift
from stages.lib.data.facts import as_numbers
from stages.lib.data.schema import TableSchema, text_in_numbers

MISSING_LEVEL = "__missing__"
OTHER_LEVEL = "__other__"
INDICATOR_SUFFIX = "__missing"


def _as_text(series: pd.Series) -> pd.Series:
    """Categorical values as strings, missing kept as NaN (1 and "1" are one level)."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("boolean")
    text = series.astype("string")
    return text.str.strip()


def category_counts(series: pd.Series) -> pd.Series:
    """How often each level of a categorical column occurs (missing values not counted)."""
    return _as_text(series).value_counts(dropna=True)


def _level_codes(text: pd.Series, known: list[str]) -> np.ndarray:
    """Position of each value in `known`, -1 for a missing or unseen value."""
    # Arrow's hash lookup on the Arrow-backed strings, without converting them to
    # Python objects: faster than pd.Index.get_indexer where scoring millions of
    # customers notices (benchmarks/README.md, "Scoring").
    values = pa.array(text)
    found = pc.index_in(values, value_set=pa.array(known, type=values.type))
    codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    unmatched = (codes < 0) & text.notna().to_numpy()
    if unmatched.any():
        # Scoring reads categories as text; training may have read a column of numbers
        # or flags as such, so "1" may be the level "1.0" (or "1"), and "true" "True".
        positions = {level: i for i, level in enumerate(known)}
        which, distinct = pd.factorize(text[unmatched])
        lookup = np.array([_typed_level(str(v), positions) for v in distinct], dtype=np.int32)
        codes[unmatched] = lookup[which]
    return codes


def _typed_level(value: str, positions: dict[str, int]) -> int:
    """The level `value` had as the number or flag training read it as; -1 if none."""
    if value.lower() in ("true", "false"):
        candidates = [value.lower().capitalize()]
    else:
        try:
            number = float(value)
        except ValueError:
            return -1
        candidates = [str(number)] + ([str(int(number))] if number.is_integer() else [])
    return next((positions[c] for c in candidates if c in positions), -1)


class CustomerPreprocessor(TransformerMixin, BaseEstimator):
    """A customer table to model features. It also records the ID columns and the time column of the
    training table, which are not features, so that scoring names customers (and passes their
    snapshot dates through) without reading params.yaml, which may have changed since."""

    def __init__(self, numeric_columns: list[str], categorical_columns: list[str],
                 rare_category_min_count: int = 10, id_columns: list[str] | None = None,
                 time_column: str | None = None):
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns
        self.rare_category_min_count = rare_category_min_count
        self.id_columns = id_columns
        self.time_column = time_column

    @classmethod
    def for_schema(cls, schema: TableSchema, rare_category_min_count: int) -> CustomerPreprocessor:
        return cls(list(schema.numeric_columns), list(schema.categorical_columns), rare_category_min_count,
                   list(schema.id_columns), schema.time_column)

    @property
    def input_columns(self) -> list[str]:
        return list(self.numeric_columns) + list(self.categorical_columns)

    def fit(self, frame: pd.DataFrame, y=None) -> CustomerPreprocessor:
        numeric = self.numeric_block(frame, "training data")
        return self.fit_statistics(
            medians={c: float(numeric[c].median()) for c in self.numeric_columns},
            columns_with_gaps=[c for c in self.numeric_columns if numeric[c].isna().any()],
            level_counts={c: category_counts(frame[c]) for c in self.categorical_columns},
            numeric_bins={c: drift.numeric_bins_of(c, numeric[c].to_numpy(np.float32)) for c in self.numeric_columns},
            rows=len(frame),
        )

    def fit_statistics(self, medians: dict[str, float], columns_with_gaps: list[str],
                       level_counts: dict[str, pd.Series], numeric_bins: dict[str, drift.FeatureBins],
                       rows: int) -> CustomerPreprocessor:
        """Fit from the training rows' statistics: each numeric column's median, whether it has gaps and
        its drift bins, each categorical column's `category_counts`, and the number of rows. `fit`
        computes them from a pandas table; stages.lib.data.split adds them up over partitions."""
        self.medians_ = {c: float(medians[c]) for c in self.numeric_columns}
        gaps = set(columns_with_gaps)
        self.indicator_columns_ = [c for c in self.numeric_columns if c in gaps]
        self.levels_ = {}
        for column in self.categorical_columns:
            counts = level_counts[column]
            frequent = sorted(counts.index[counts >= self.rare_category_min_count].tolist())
            self.levels_[column] = [MISSING_LEVEL, OTHER_LEVEL] + [v for v in frequent
                                                                   if v not in (MISSING_LEVEL, OTHER_LEVEL)]
        self.feature_names_out_ = (
            list(self.numeric_columns)
            + [c + INDICATOR_SUFFIX for c in self.indicator_columns_]
            + list(self.categorical_columns)
        )
        # Named by this preprocessor's own column names: names that came back from Dask workers are equal
        # but other objects, and pickle would write them out again instead of referring to these.
        self.drift_reference_ = drift.DriftReference(
            tuple(dataclasses.replace(numeric_bins[c], feature=c) for c in self.numeric_columns)
            + tuple(drift.categorical_bins(c, self.levels_[c], level_counts[c], rows)
                    for c in self.categorical_columns))
        return self

    @property
    def drift_reference(self) -> drift.DriftReference:
        """The training split's distributions."""
        return self.drift_reference_

    def numeric_block(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        block = {}
        for column in self.numeric_columns:
            series = frame[column]
            if pd.api.types.is_bool_dtype(series):
                series = series.astype("float32")
            elif not pd.api.types.is_numeric_dtype(series):
                series, text = as_numbers(series)
                if text.unparsed:
                    raise text_in_numbers(source, column, text, "give numbers or leave the value empty")
            block[column] = series.astype("float32")
        return pd.DataFrame(block, index=frame.index)

    def transform(self, frame: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        return self._features(frame.index, *self._read(frame, source))

    def transform_and_count(self, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict]:
        """`transform`, and the table's counts in the drift reference's bins, from one reading of its values."""
        numeric, codes = self._read(frame, source)
        return self._features(frame.index, numeric, codes), drift.table_counts(self.drift_reference, numeric, codes)

    def _read(self, frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The numeric block (NaN: missing) and each category's level codes."""
        return self.numeric_block(frame, source), {c: self.level_codes(frame[c], c) for c in self.categorical_columns}

    def _features(self, index: pd.Index, numeric: pd.DataFrame, codes: dict[str, np.ndarray]) -> pd.DataFrame:
        out = {}
        for column in self.numeric_columns:
            out[column] = numeric[column].fillna(np.float32(self.medians_[column])).to_numpy(np.float32)
        for column in self.indicator_columns_:
            out[column + INDICATOR_SUFFIX] = numeric[column].isna().to_numpy(np.float32)
        for column in self.categorical_columns:
            out[column] = pd.Categorical.from_codes(codes[column], categories=self.levels_[column])
        return pd.DataFrame(out, index=index)[self.feature_names_out_]

    def level_codes(self, series: pd.Series, column: str) -> np.ndarray:
        """Each value's position in the column's levels: 0 missing, 1 rare or unseen, 2... a frequent level."""
        text = _as_text(series)
        # Not pd.Categorical(text, categories=...): pandas deprecates unseen values there.
        codes = _level_codes(text, self.levels_[column][2:])
        # codes: -1 for missing or unseen; shift known levels past the two special ones.
        return np.where(codes >= 0, codes + 2, np.where(text.isna().to_numpy(), 0, 1)).astype(np.int32)

    def processed_drift_counts(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """The drift counts (`transform_and_count`) of rows this preprocessor transformed: a number is missing where its
        `__missing` indicator is 1 (a column without gaps in training has no indicator, so its
        missing values count as its median)."""
        numbers = features[self.numeric_columns].astype(np.float32)
        for column in self.indicator_columns_:
            numbers.loc[features[column + INDICATOR_SUFFIX].to_numpy() == 1, column] = np.nan
        codes = {c: pd.Categorical(features[c], categories=self.levels_[c]).codes
                 for c in self.categorical_columns}
        return drift.table_counts(self.drift_reference, numbers, codes)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)
