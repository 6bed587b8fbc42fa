"""The local engine: partition functions in this process, independent fits in joblib's threads.

A table's partitions (one per file) are read once and kept for the stage's
passes, so this process holds the table, as a single machine's pipeline does.
`map_and_write` (scoring) instead reads its input in batches, the next one while
this one is worked on, so memory holds one batch and the small columns of all.
Independent fits (tune's cross-validation fits, calibrate's folds, evaluate's
baselines) run side by side in threads of this process, sized to the usable
cores (stages.lib.core.cores.local_workers). Threads, not worker processes:
LightGBM, SMOTE's neighbour search and the logistic regression's BLAS release
the GIL, and threads share the training rows instead of copying them to each
process and importing the libraries again (benchmarks/README.md, "Scaling").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from stages.lib.core.cores import local_workers
from stages.lib.core.params_types import AUTO
from stages.lib.core.tables import (
    concat_parts,
    is_directory_output,
    is_partitioned,
    iter_table_batches,
    parquet_parts,
    read_table,
    write_partitioned,
    write_table,
)
from stages.lib.engines.base import Columns, Engine, PartitionFunction, Table

# Up to this many independent fits per core run at once, so that the operating system evens out a
# batch whose fits do not divide among the cores (3 folds on 2 cores: all 3 at once, not 2 then 1).
FITS_PER_CORE = 2
T = TypeVar("T")


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._read: dict[tuple, list[pd.DataFrame]] = {}

    def _partitions(self, path: Table) -> list[pd.DataFrame]:
        if isinstance(path, pd.DataFrame):
            return [path]
        files = parquet_parts(path) if is_partitioned(path) else [Path(path)]
        # Kept by name, size and time: a stage's passes over its input read it once.
        key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())
        if key not in self._read:
            self._read = {key: [read_table(f) for f in files]}
        return self._read[key]

    def _each(self, path: Table, columns: Sequence[str] | None) -> Iterator[tuple[pd.DataFrame, int]]:
        offset = 0
        for frame in self._partitions(path):
            yield (frame[list(columns)] if columns is not None else frame), offset
            offset += len(frame)

    def map(self, function: PartitionFunction, path: Table, *shared: Any, columns: Sequence[str] | None = None,
            combine: Callable[[list], Any] | None = None) -> Any:
        results = [function(frame, offset, *shared) for frame, offset in self._each(path, columns)]
        return combine(results) if combine is not None else results

    def write(self, function: PartitionFunction, path: Table, outputs: Sequence[str | Path], *shared: Any) -> list:
        pieces: list[list[pd.DataFrame]] = [[] for _ in outputs]
        results = []
        for frame, offset in self._each(path, None):
            frames, result = function(frame, offset, *shared)
            for piece, part in zip(pieces, frames):
                piece.append(part)
            results.append(result)
        for piece, output in zip(pieces, outputs):
            write_table(concat_parts(piece), output)
        return results

    def map_and_write(self, function: PartitionFunction, path: Table, output: str | Path, *shared: Any,
                      keys: Sequence[str], finish: Callable[..., Columns], dropped: Sequence[str] = (),
                      batch_rows: int, text_columns: Sequence[str] = ()) -> tuple[Columns, list]:
        frames, results, offset = [], [], 0
        for batch in _read_ahead(_batches(path, batch_rows, list(text_columns))):
            frame, result = function(batch, offset, *shared)
            frames.append(frame)
            results.append(result)
            offset += len(batch)
        table = concat_parts(frames)
        values = {key: table[key].to_numpy() for key in keys}
        table = table.drop(columns=list(dropped)).assign(**finish(*(values[key] for key in keys)))
        (write_partitioned if is_directory_output(output) else write_table)(table, output)
        return values, results

    def gather(self, path: Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
        frames = [frame for frame, _ in self._each(path, columns)]
        return concat_parts(frames)

    def repeated_rows(self, path: Table, key_columns: Sequence[str]) -> np.ndarray:
        keys = self.gather(path, columns=key_columns)
        return np.flatnonzero(keys.duplicated(keep="first").to_numpy())

    def jobs(self, fits: int) -> int:
        return max(1, min(fits, FITS_PER_CORE * self.workers)) if self.workers > 1 else 1

    def fit_threads(self, threads: int | str, fits: int) -> int:
        return max(1, self.workers // self.jobs(fits)) if threads == AUTO else int(threads)

    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(joblib.parallel_backend("threading", n_jobs=jobs))
        # OpenBLAS gives every call all the cores: with fits side by side that is jobs x cores threads,
        # which made the logistic regressions' grid 3.6x slower on 2 cores. Each fit gets its share.
        stack.enter_context(threadpool_limits(limits=max(1, self.workers // jobs), user_api="blas"))
        return stack

    def fit(self, classifier, path: Table, columns: Sequence[str], label: str) -> tuple[Any, int]:
        table = self.gather(path)
        return classifier.fit(table[list(columns)], table[label].to_numpy(np.int8)), len(table)


def _batches(path: Table, batch_rows: int, text_columns: list[str]) -> Iterator[pd.DataFrame]:
    """The input in batches; a table with a header and no rows gives one empty batch with the header."""
    empty = True
    for batch in iter_table_batches(path, batch_rows, text_columns):
        empty = False
        yield batch
    if empty:
        # A parquet file without rows has no batches; its columns are in the schema.
        yield read_table(path)


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, each next one read in a background thread while the caller works on the current one
    (the reader's and LightGBM's C code release the GIL); the order and the values are those of `items`."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, _DONE)
        while (item := pending.result()) is not _DONE:
            pending = pool.submit(next, items, _DONE)
            yield item


_DONE = object()


@contextlib.contextmanager
def start() -> Iterator[LocalEngine]:
    yield LocalEngine(local_workers())
