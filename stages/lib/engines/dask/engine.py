"""The Dask engine: partition functions, independent fits and the final fit on a Dask cluster.

The engine's folder (this module, cluster.py, training.py) is the only code of the
project that imports dask or distributed.

- Partition functions run on the workers, one task per file of a table, each
  reading its own file, so no process holds a partitioned table; only their
  (small) results come back, combined in a tree of tasks where asked.
- `map_and_write` (scoring) keeps each partition's frame on its worker; only the
  key columns come back, and the whole-table columns go back to be written.
- Independent fits go through joblib's Dask backend (tune's cross-validation,
  calibrate's folds, evaluate's baselines): one worker thread each.
- The final fit is lightgbm.dask's data-parallel training (training.py).

Connecting to the cluster, and its one-line errors, are cluster.py's.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.files import atomic_directory
from stages.lib.core.params_types import AUTO
from stages.lib.core.tables import (
    PARQUET_SUFFIXES,
    PART_NAME,
    concat_parts,
    is_partitioned,
    parquet_parts,
    parquet_rows,
    write_table,
)
from stages.lib.engines.base import Columns, Engine, PartitionFunction, Table
from stages.lib.engines.dask.cluster import connected, read_part
from stages.lib.engines.dask.training import fit_on_workers

# Results combined per task in `map(..., combine=...)`: no task holds more than this many.
FAN_IN = 8
ROW = "__row__"


def _apply(function: PartitionFunction, part: str, offset: int, columns, shared: tuple) -> Any:
    return function(read_part(part, columns), offset, *shared)


def _write_part(function: PartitionFunction, part: str, offset: int, destinations: list[Path], shared: tuple) -> Any:
    frames, result = function(read_part(part, None), offset, *shared)
    for frame, destination in zip(frames, destinations):
        write_table(frame, destination)
    return result


def _identity(frame: pd.DataFrame, offset: int) -> pd.DataFrame:
    return frame


def _keys_with_rows(part: str, offset: int, key_columns: list[str]) -> pd.DataFrame:
    ids = read_part(part, key_columns)
    return ids.assign(**{ROW: np.arange(offset, offset + len(ids), dtype=np.int64)})


def _repeats(frame: pd.DataFrame, key_columns: list[str]) -> pd.Series:
    """The row numbers of every repeat of an ID but its first row (all of an ID's rows are in `frame`)."""
    ordered = frame.sort_values(ROW, kind="stable")
    return ordered.loc[ordered.duplicated(subset=key_columns, keep="first"), ROW]


class DaskEngine(Engine):
    name = "dask"

    def __init__(self, client):
        self.client = client
        self.workers = max(1, sum(client.nthreads().values()))
        self._layouts: dict[tuple, tuple[list, list[int]]] = {}
        self._frames: list[pd.DataFrame] = []

    def jobs(self, fits: int) -> int:
        return max(1, min(fits, self.workers))

    def fit_threads(self, threads: int | str, fits: int) -> int:
        # Each fit holds one worker thread: the cluster's threads are the parallelism.
        return 1 if threads == AUTO else int(threads)

    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        import joblib

        return joblib.parallel_backend("dask")

    def _layout(self, path: Table) -> tuple[list, list[int]]:
        """The table's files (as the workers see them) and the number of each file's first row; a frame in this
        process is sent to the cluster as one partition."""
        if isinstance(path, pd.DataFrame):
            key = ("frame", id(path))
            if key not in self._layouts:
                self._layouts[key] = ([self.client.scatter(path)], [0])
                self._frames.append(path)  # kept alive while its id is a key
            return self._layouts[key]
        files = parquet_parts(path) if is_partitioned(path) else [Path(path)]
        key = tuple(str(f.resolve()) for f in files)
        if key not in self._layouts:
            if len(files) == 1:
                offsets = [0]
            else:
                lengths = self.client.gather([self.client.submit(parquet_rows, f, pure=False) for f in key])
                offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
            self._layouts[key] = (list(key), offsets)
        return self._layouts[key]

    def _shared(self, shared: tuple):
        """Objects every task needs, sent to every worker once."""
        return self.client.scatter([shared], broadcast=True)[0] if shared else ()

    def map(self, function: PartitionFunction, path: Table, *shared: Any, columns: Sequence[str] | None = None,
            combine: Callable[[list], Any] | None = None) -> Any:
        parts, offsets = self._layout(path)
        sent = self._shared(shared)
        futures = [self.client.submit(_apply, function, part, offset, columns, sent, pure=False)
                   for part, offset in zip(parts, offsets)]
        if combine is None or len(futures) == 1:
            results = self.client.gather(futures)
            return results if combine is None else combine(results)
        while len(futures) > 1:
            futures = [self.client.submit(combine, futures[i:i + FAN_IN], pure=False)
                       for i in range(0, len(futures), FAN_IN)]
        return futures[0].result()

    def write(self, function: PartitionFunction, path: Table, outputs: Sequence[Table],
              *shared: Any) -> list:
        parts, offsets = self._layout(path)
        sent = self._shared(shared)
        with contextlib.ExitStack() as stack:
            folders = [stack.enter_context(atomic_directory(output, holds=PARQUET_SUFFIXES)).resolve()
                       for output in outputs]
            futures = [self.client.submit(_write_part, function, part, offset,
                                          [folder / PART_NAME.format(number) for folder in folders], sent, pure=False)
                       for number, (part, offset) in enumerate(zip(parts, offsets))]
            return self.client.gather(futures)

    def gather(self, path: Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return concat_parts(self.map(_identity, path, columns=columns))

    def repeated_rows(self, path: Table, key_columns: Sequence[str]) -> np.ndarray:
        import dask
        import dask.dataframe as dd

        parts, offsets = self._layout(path)
        ids = [dask.delayed(_keys_with_rows)(part, offset, list(key_columns)) for part, offset in zip(parts, offsets)]
        if len(ids) == 1:
            repeats = dask.delayed(_repeats)(ids[0], list(key_columns)).compute()
        else:
            meta = self.client.submit(_keys_with_rows, parts[0], 0, list(key_columns), pure=False).result().iloc[:0]
            table = dd.from_delayed(ids, meta=meta, verify_meta=False)
            repeats = table.shuffle(on=list(key_columns)).map_partitions(
                _repeats, list(key_columns), meta=(ROW, "int64")).compute()
        return np.sort(repeats.to_numpy(np.int64))

    def fit(self, classifier, path: Table, columns: Sequence[str], label: str) -> tuple[Any, int]:
        parts, offsets = self._layout(path)
        return fit_on_workers(self.client, parts, offsets, classifier, columns, label)

    def map_and_write(self, function: PartitionFunction, path: Table, output: str | Path, *shared: Any,
                      keys: Sequence[str], finish: Callable[..., Columns], dropped: Sequence[str] = (),
                      batch_rows: int, text_columns: Sequence[str] = ()) -> tuple[Columns, list]:
        # A partition is a file: batch_rows and text_columns (for CSV) are the local engine's.
        parts, offsets = self._layout(path)
        client = self.client
        sent = self._shared(shared)
        results = [client.submit(_apply, function, part, offset, None, sent, pure=False)
                   for part, offset in zip(parts, offsets)]
        frames = [client.submit(operator.itemgetter(0), result, pure=False) for result in results]
        small = client.gather([client.submit(operator.itemgetter(1), result, pure=False) for result in results])
        pieces = client.gather([client.submit(_columns, frame, list(keys), pure=False) for frame in frames])
        values = {key: np.concatenate([piece[key] for piece in pieces]) for key in keys}
        finished = finish(*(values[key] for key in keys))
        bounds = np.concatenate([[0], np.cumsum([len(piece[keys[0]]) for piece in pieces])]).astype(int)
        with atomic_directory(output, holds=PARQUET_SUFFIXES) as folder:
            client.gather([
                client.submit(_finished_part, frame, {name: column[a:b] for name, column in finished.items()},
                              list(dropped), folder.resolve() / PART_NAME.format(number), pure=False)
                for number, (frame, a, b) in enumerate(zip(frames, bounds[:-1], bounds[1:]))])
        return values, small


def _columns(frame: pd.DataFrame, keys: list[str]) -> dict[str, np.ndarray]:
    return {key: frame[key].to_numpy() for key in keys}


def _finished_part(frame: pd.DataFrame, columns: dict[str, np.ndarray], dropped: list[str], destination: Path) -> None:
    write_table(frame.drop(columns=dropped).assign(**columns), destination)



@contextlib.contextmanager
def start() -> Iterator[DaskEngine]:
    """A DaskEngine on the cluster Dask's configuration names, or on a LocalCluster of this machine."""
    with connected() as (client, name):
        workers = client.scheduler_info()["workers"].values()
        # Which cluster ran the work is part of the result's story: one line, before the stage's own.
        print(f"dask: on {name}: {len(workers)} workers, {sum(w['nthreads'] for w in workers)} threads")
        yield DaskEngine(client)
