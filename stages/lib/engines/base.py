"""Where the work runs: the engine interface, and opening the engine a stage names.

The library says *what* is computed: functions of one batch of a table (its
statistics, its split, its sample, its scores) and model fits. An engine says
*where*: `stages.lib.engines.local` runs the batch functions in this process and
independent fits side by side in joblib's threads, sized to the usable cores;
`stages.lib.engines.dask` runs both on a Dask cluster. A stage opens the engine
`compute.engine` names once (`open_engine`) and hands it to the library, so both
engines compute the same thing from the same functions. An engine is handed
functions, tables and thread counts, never params or schemas.

What may follow the machine is how many independent pieces of work run at once
(fits, folds, partitions), never the work inside one piece: the outputs are the
same bytes on one core or sixty-four. `model.threads` (threads inside one fit) is
a committed count, or `auto` where a fit's result does not depend on it.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# A table: a CSV or parquet file, a directory or glob of parquet files, or a frame already in this
# process (one partition: what tests and notebooks hand the library).
Table = str | Path | pd.DataFrame
PartitionFunction = Callable[..., Any]
# What `map_and_write`'s `finish` returns: columns computed from every row at once (ranks), by name.
Columns = dict[str, np.ndarray]


class Engine(abc.ABC):
    """Where the pieces of a stage's work run; the library calls these and nothing else of an engine.

    A table is a sequence of partitions, one per file, in name order. Partition
    functions are called as `function(partition, offset, *shared)`, `offset` being
    the number of the partition's first row in the whole table; their results come
    back in table order. A function must not depend on how the table is cut into
    pieces: the algorithms built on them (stages.lib.data.sampling,
    stages.lib.data.split, stages.lib.scoring.batches) give the same answer from
    one partition or from many.
    """

    name: str
    # The cores (or the cluster's worker threads) independent work shares.
    workers: int

    @abc.abstractmethod
    def map(self, function: PartitionFunction, path: Table, *shared: Any, columns: Sequence[str] | None = None,
            combine: Callable[[list], Any] | None = None) -> Any:
        """Each partition's `function(partition, offset, *shared)`, in table order; with `combine`
        (a function of a list of results, associative), the one combined result. `columns`: read
        only these."""

    @abc.abstractmethod
    def write(self, function: PartitionFunction, path: Table, outputs: Sequence[str | Path], *shared: Any) -> list:
        """Write tables made partition by partition: `function(partition, offset, *shared)` returns
        (a frame for each output, a small result); each output is replaced, atomically, once every
        partition is written. Returns the small results in table order."""

    @abc.abstractmethod
    def map_and_write(self, function: PartitionFunction, path: Table, output: str | Path, *shared: Any,
                      keys: Sequence[str], finish: Callable[..., Columns], dropped: Sequence[str] = (),
                      batch_rows: int, text_columns: Sequence[str] = ()) -> tuple[Columns, list]:
        """Write a table made batch by batch whose last columns need every row at once (ranks).

        `function(batch, offset, *shared)` returns (a frame, a small result) for each batch: the
        local engine reads the input in turn, `batch_rows` rows at a time (a CSV's `text_columns`
        as text in every batch), the Dask engine one file per task on the workers, where the
        frames stay. Only the frames' `keys` columns come to this process, for `finish(*keys)`
        to compute the whole-table columns; each frame gets its rows of them, loses its `dropped`
        columns, and is written to `output`, in input order (a file by its suffix, or a directory
        of parquet files, one per partition). Returns every row's keys and the small results."""

    @abc.abstractmethod
    def gather(self, path: Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole table in this process."""

    @abc.abstractmethod
    def repeated_rows(self, path: Table, key_columns: Sequence[str]) -> np.ndarray:
        """Numbers of the rows that repeat an earlier row's key columns (every repeat but a key's first row)."""

    @abc.abstractmethod
    def jobs(self, fits: int) -> int:
        """How many of a batch of `fits` independent fits run at once."""

    @abc.abstractmethod
    def fit_threads(self, threads: int | str, fits: int) -> int:
        """LightGBM threads inside each fit of a batch of `fits`: `threads` (model.threads) when it is a
        number, or for `auto` the cores each fit gets (params allow `auto` only where threads cannot
        change a fit's result)."""

    @contextlib.contextmanager
    def parallel(self, fits: int) -> Iterator[int]:
        """A context in which joblib runs a batch of `fits` independent fits on this engine; yields the
        n_jobs to give them."""
        with self._joblib_backend(self.jobs(fits)):
            yield self.jobs(fits)

    @abc.abstractmethod
    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        """joblib's backend for this engine."""

    @abc.abstractmethod
    def fit(self, classifier, path: Table, columns: Sequence[str], label: str) -> tuple[Any, int]:
        """`classifier` (an unfitted LGBMClassifier) fitted on every row of a table, on its `columns` and 0/1
        `label`, as a plain LGBMClassifier; and the rows."""


@contextlib.contextmanager
def open_engine(name: str) -> Iterator[Engine]:
    """The engine `name` (compute.engine) names, started (a Dask cluster is connected to or started) and,
    on leaving, closed."""
    # Imported by name so that a local stage never imports (or depends, in dvc.yaml, on) the Dask engine.
    module = importlib.import_module(f"stages.lib.engines.{name}.engine")
    with module.start() as engine:
        yield engine
