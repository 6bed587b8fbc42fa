"""The tables of data.events: found by name, checked once, read with only the columns the features use.

data.events is a directory holding the customers table (features.customers) and
one table per features.tables entry, each `<name>.csv`, `<name>.parquet` or a
directory `<name>/` of parquet files. A table without its ID or time column, or
a time that does not parse, is one error line; events of customers the customers
table does not know are left out with one warning line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from stages.lib.core.errors import DataError
from stages.lib.core.params_features import FeaturesParams
from stages.lib.core.tables import READ_ERRORS, parquet_header, read_table
from stages.lib.data.dates import parse_dates


@dataclass(frozen=True)
class EventTable:
    """An event table as the features read it: its rows' customer positions (in the customers table),
    event times (ns since 1970) and aggregated columns (`summable_values`); in file order, or with `ordered`
    sorted by (customer, time) with ties in file order."""

    name: str
    customer: np.ndarray
    time: np.ndarray
    values: dict[str, np.ndarray]
    ordered: bool = False


def table_path(events: str | Path, name: str) -> Path:
    """The file or directory of table `name` in the events directory."""
    folder = Path(events)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory; data.events names a directory holding the customers table "
                        "and the event tables (docs/own-data.md, \"Event tables\")")
    found = [path for path in (folder / f"{name}.parquet", folder / f"{name}.csv", folder / name) if path.exists()]
    if not found:
        raise DataError(f"{folder}: no table '{name}' (looked for {name}.parquet, {name}.csv and {name}/); add it, "
                        "or change features.customers / features.tables")
    return found[0]


def table_columns(path: Path) -> list[str]:
    """A table's column names, from its header alone."""
    try:
        if path.suffix.lower() == ".csv":
            return list(pacsv.open_csv(path).schema.names)
        return list(parquet_header(path).columns)
    except READ_ERRORS as error:
        raise DataError(f"{path}: cannot be read ({str(error).splitlines()[0]}); check the file is complete, "
                        "or export it again") from None


def require_columns(path: Path, columns: list[str], keys: dict[str, str]) -> None:
    """A DataError naming the first of `columns` the table lacks and the param (in `keys`) that names it."""
    require_present(str(path), table_columns(path), columns, keys)


def require_present(source: str, present_columns, columns: list[str], keys: dict[str, str]) -> None:
    """`require_columns` for columns already known (a file's header, a frame's columns)."""
    present = set(present_columns)
    for column in columns:
        if column not in present:
            key = keys.get(column, "")
            raise DataError(f"{source}: no column '{column}'{f' ({key})' if key else ''}; the table has "
                            f"{', '.join(sorted(present)[:12])}{' ...' if len(present) > 12 else ''}: rename the "
                            f"column or change {key or 'the features section'}")


def table_keys(name: str, features: FeaturesParams) -> dict[str, str]:
    """Event table `name`'s columns the features read, each with the param that names it."""
    spec = features.tables[name]
    return {features.id_column: "features.id_column", spec.timestamp: f"features.tables.{name}.timestamp",
            **{c: f"features.tables.{name}.sums" for c in spec.sums},
            **{c: f"features.tables.{name}.means" for c in spec.means}}


def read_events(events: str | Path, name: str, features: FeaturesParams, ids: pd.Series) -> EventTable:
    """Table `name`'s events of the customers `ids` (a part of the customers table, or all of it), each
    event's customer as its position in `ids`; other customers' events are left out. A parquet table is read
    a column at a time (what memory holds is one column of the file beside the arrays kept)."""
    spec = features.tables[name]
    path = table_path(events, name)
    keys = table_keys(name, features)
    whole = read_table(path, list(keys)) if path.suffix.lower() == ".csv" else None
    # Only the events of the part's range of IDs: files (or row groups) sorted or clustered by customer
    # are then read only where the part's customers are, so each part of a cluster reads its own events.
    numbered = whole is None and len(ids) > 0 and pd.api.types.is_integer_dtype(ids) and \
        pd.api.types.is_integer_dtype(parquet_header(path).dtypes.get(features.id_column, object))
    within = (features.id_column, ids.min(), ids.max()) if numbered else None

    def column(key: str) -> pd.Series:
        return whole[key] if whole is not None else read_table(path, [key], within)[key]

    position = pd.Index(ids).get_indexer(column(features.id_column))
    # Parsed before any row is left out, so a bad time names its row of the file.
    time = parse_dates(column(spec.timestamp), spec.timestamp, 0, str(path), key=keys[spec.timestamp],
                       needs="its time").astype(np.int64)
    # The events of known customers, sorted by (customer, time), ties in file order; each value column is put
    # in that order as it is read, so no column is held twice.
    order = np.flatnonzero(position >= 0)
    order = order[np.lexsort((time[order], position[order]))]
    position, time = position[order], time[order]

    values = {}
    for aggregated in dict.fromkeys([*spec.sums, *spec.means]):
        series = column(aggregated)
        if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            raise DataError(f"{path}: column '{aggregated}' ({keys[aggregated]}) is not numeric ({series.dtype}); "
                            "sums and means need numbers: fix the export or remove the column there")
        values[aggregated] = summable_values(series)[order]
    return EventTable(name, position.astype(np.int64), time, values, ordered=True)


def summable_values(series: pd.Series) -> np.ndarray:
    """A value column in the narrowest array whose sums are the same bits as float64 sums of it.

    Whole numbers (integers, booleans, without gaps) whose every possible partial sum stays below 2**53 are
    kept in the narrowest integer type that holds them: summed in int64 they are exact, and so are float64
    sums of them, so the features are the same bits in a fraction of the memory (a page count in one
    byte, not eight). Anything else is float64, a missing value as 0: it adds nothing to a sum (and counts
    in a mean's denominator, as the event does)."""
    if (pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series)) and not series.hasnans:
        whole = series.to_numpy()
        if whole.dtype == bool or not len(whole):
            return whole.astype(np.int8)
        low, high = int(whole.min()), int(whole.max())
        if max(abs(low), abs(high)) * len(whole) < 2**53:
            for narrow in (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32):
                if np.iinfo(narrow).min <= low and high <= np.iinfo(narrow).max:
                    return whole.astype(narrow)
            return whole.astype(np.int64, copy=False)
    return series.to_numpy(np.float64, na_value=0.0)
