"""Read and write customer tables, CSV or parquet by suffix; every write atomic.

One check of the input file for every reader, so a missing, empty or cut-short
table gives the same one-line message wherever it is read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stages.lib.core.errors import DataError
from stages.lib.core.files import atomic_directory, atomic_path, first_line

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
READ_ERRORS = (ValueError, OSError, pa.ArrowException, pd.errors.ParserError)
GLOB_CHARACTERS = ("*", "?", "[")
ROW_GROUP_ROWS = 1024 * 1024   # pyarrow's default row group
PART_NAME = "part-{:05d}.parquet"  # the files of a partitioned output, in row order


def is_partitioned(path: str | Path) -> bool:
    """A partitioned parquet table: a directory of parquet files, or a glob of them."""
    return Path(path).is_dir() or any(character in str(path) for character in GLOB_CHARACTERS)


def is_directory_output(path: str | Path) -> bool:
    """An output path without a file suffix (`scores/`, `scores`) names a directory of parquet files."""
    return str(path).endswith(("/", os.sep)) or not Path(path).suffix


def parquet_parts(path: str | Path) -> list[Path]:
    """The files of a table, in name order: a directory's parquet files, a glob's matches, or the one file."""
    if not is_partitioned(path):
        return [_readable(path)[0]]
    if Path(path).is_dir():
        found = Path(path).iterdir()
    else:
        found = (Path(match) for match in glob.glob(str(path)))
    parts = sorted(p for p in found if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES)
    if not parts:
        raise DataError(f"{path}: no .parquet files found; give a directory of parquet files, a glob "
                        "such as 'customers/*.parquet', or one .csv or .parquet file")
    return parts


def parquet_rows(path: str | Path) -> int:
    """The rows of a parquet file, from its footer (nothing else is read)."""
    return pq.ParquetFile(path).metadata.num_rows


def parquet_header(path: str | Path) -> pd.DataFrame:
    """The columns of a parquet table (its first file's schema) as a frame without rows."""
    part = parquet_parts(path)[0]
    try:
        return pq.read_schema(part).empty_table().to_pandas()
    except READ_ERRORS as error:
        raise _unreadable(part, "parquet", error) from None


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(f"{path}: unknown table format '{suffix}'; use a .csv or .parquet file")


def _readable(path: str | Path) -> tuple[Path, str]:
    """The path and its format, once the file is known to exist and hold bytes."""
    path = Path(path)
    if not path.suffix and not path.exists():
        raise DataError(f"{path}: not found; check the path (data.path in params.yaml) or run `dvc pull`")
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (data.path in params.yaml) or run `dvc pull`")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; export the table again, with at least a header row")
    return path, fmt


def _unreadable(path: Path, fmt: str, error: BaseException) -> DataError:
    return DataError(f"{path}: cannot be read as {fmt} ({first_line(error)}); "
                     "check the file is complete, or export it again")


def concat_parts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The pieces of one table, in order, as one frame. Pieces without rows are left out (a categorical column
    written without rows reads back without its levels, and would turn the whole column to text)."""
    pieces = [frame for frame in frames if len(frame)] or frames[:1]
    return pieces[0].reset_index(drop=True) if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)


def read_table(path: str | Path, columns: list[str] | None = None,
               within: tuple[str, object, object] | None = None) -> pd.DataFrame:
    """Read a CSV or parquet table, or a partitioned one (its files in name order, as one table);
    a missing, empty or unreadable file is a DataError. `within` (column, lowest, highest): only the
    rows whose column lies in [lowest, highest], in file order; a parquet file's row groups outside it
    (by their statistics) are not read at all."""
    if is_partitioned(path):
        return concat_parts([read_table(part, columns, within) for part in parquet_parts(path)])
    path, fmt = _readable(path)
    try:
        if fmt == "csv":
            # pyarrow's CSV reader is several times faster than pandas' on large exports.
            frame = pd.read_csv(path, usecols=columns, engine="pyarrow")
            return frame[frame[within[0]].between(within[1], within[2])] if within else frame
        if within:
            column, lowest, highest = within
            return pd.read_parquet(path, columns=columns, filters=[(column, ">=", lowest), (column, "<=", highest)])
        return pd.read_parquet(path, columns=columns)
    except READ_ERRORS as error:
        raise _unreadable(path, fmt, error) from None


def iter_table_batches(path: str | Path, batch_rows: int,
                       text_columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Yield a table in chunks of at most `batch_rows` rows, to keep memory flat.

    A CSV file's `text_columns` are read as text in every chunk (not as numbers in one
    chunk and text in another). A partitioned table is read file by file, in name order."""
    if is_partitioned(path):
        for part in parquet_parts(path):
            yield from iter_table_batches(part, batch_rows)
        return
    path, fmt = _readable(path)
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, chunksize=batch_rows, dtype=dict.fromkeys(text_columns or [], "str"))
    except READ_ERRORS as error:
        raise _unreadable(path, fmt, error) from None


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV or parquet (by suffix), atomically and deterministically."""
    fmt = table_format(path)
    # A directory of parquet files in the way is an earlier compute.engine dask run's output.
    with atomic_path(path, replaces_directory_of=PARQUET_SUFFIXES) as tmp:
        if fmt == "csv":
            # pyarrow writes CSV an order of magnitude faster than pandas; nulls become empty fields.
            pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), tmp)
            return
        # A row group at a time, each converted only when it is written: memory holds the frame and one
        # row group's copy, not two frames. The groups are pyarrow's default size, so the file is the same.
        first = pa.Table.from_pandas(frame.iloc[:ROW_GROUP_ROWS], preserve_index=False)
        with pq.ParquetWriter(tmp, first.schema, compression="zstd") as writer:
            writer.write_table(first, row_group_size=ROW_GROUP_ROWS)
            for start in range(ROW_GROUP_ROWS, len(frame), ROW_GROUP_ROWS):
                group = pa.Table.from_pandas(frame.iloc[start:start + ROW_GROUP_ROWS], preserve_index=False,
                                             schema=first.schema)
                writer.write_table(group, row_group_size=ROW_GROUP_ROWS)


def write_partitioned(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as a directory of parquet files (here one), replacing an earlier run's atomically."""
    with atomic_directory(path, holds=PARQUET_SUFFIXES) as tmp:
        write_table(frame, tmp / PART_NAME.format(0))
