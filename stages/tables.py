"""Read and write tables, JSON and pickled objects; every write is atomic.

A write goes to a temporary file in the destination's directory and is renamed
into place only when complete, so a stage killed at any moment leaves either
the previous complete file or none, never half of one that DVC would cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stages.errors import ArtifactError, DataError, OutputError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed by SIGKILL cannot clean up; the next write of the same file does.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise _cannot_write(path, error) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give outputs the usual permissions.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as error:
        # Disk full, permission denied, a directory in the way: the user's to fix, not a bug.
        raise _cannot_write(path, error) from None
    finally:
        tmp.unlink(missing_ok=True)


def _cannot_write(path: Path, error: OSError) -> OutputError:
    reason = error.strerror or _first_line(error)
    return OutputError(
        f"{path}: cannot write ({reason}); check the folder exists as a folder, "
        "is writable and the disk has space"
    )


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(f"{path}: unknown table format '{suffix}'; use a .csv or .parquet file")


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or parquet table; a missing, empty or unreadable file is a DataError."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check data.path in params.yaml or run `dvc pull`")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; export the table again")
    try:
        if fmt == "csv":
            # pyarrow's CSV reader is several times faster than pandas' on large exports.
            frame = pd.read_csv(path, usecols=columns, engine="pyarrow")
        else:
            frame = pd.read_parquet(path, columns=columns)
    except (ValueError, OSError, pa.ArrowException, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot be read as {fmt} ({_first_line(error)}); "
                        "check the file is complete, or export it again") from None
    return frame


def _first_line(error: BaseException, limit: int = 160) -> str:
    """The gist of a library's error, short enough for one line on a terminal."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table as CSV or parquet (by suffix), atomically and deterministically."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if fmt == "csv":
            # pyarrow writes CSV an order of magnitude faster than pandas; nulls become empty fields.
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp, compression="zstd")


def iter_table_batches(path: str | Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    """Yield a table in chunks of at most `batch_rows` rows, to keep memory flat."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; give a table with at least a header row")
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(path, chunksize=batch_rows)
    except (ValueError, OSError, pa.ArrowException, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot be read as {fmt} ({_first_line(error)}); "
                        "check the file is complete, or export it again") from None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: Any, path: str | Path, indent: int | None = 2) -> None:
    """Write JSON atomically, with sorted keys only where the caller sorted them."""
    text = json.dumps(_json_safe(data), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run `dvc repro` (or `dvc pull`) to create it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path}: not valid JSON; run `dvc repro` to rewrite it") from None


def save_object(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        joblib.dump(obj, tmp)


def load_object(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run `dvc repro` (or `dvc pull`) to create it")
    try:
        return joblib.load(path)
    except Exception as error:  # unpickling raises anything: EOFError, UnpicklingError, KeyError...
        raise ArtifactError(f"{path}: cannot be loaded ({_first_line(error)}); "
                            "rebuild it with `dvc repro` or fetch it with `dvc pull`") from None
