"""The local engine: partition functions in this process, independent fits in joblib's threads.

A table's partitions (one per file) are read once and kept for the stage's
passes, so this process holds the table, as a single machine's pipeline does.
Independent fits (tune's cross-validation fits, calibrate's folds, evaluate's
baselines) run side by side in threads of this process, sized to the usable
cores (stages.lib.engines.base.local_workers). Threads, not worker processes:
LightGBM, SMOTE's neighbour search and the logistic regression's BLAS release
the GIL, and threads share the training rows instead of copying them to each
process and importing the libraries again (benchmarks/README.md, "Scaling").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from stages.lib.core.params import AUTO, ModelParams
from stages.lib.core.tables import is_partitioned, parquet_parts, read_table, write_table
from stages.lib.data.schema import split_features
from stages.lib.engines.base import FITS_PER_CORE, Engine, PartitionFunction, local_workers


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self._read: dict[tuple, list[pd.DataFrame]] = {}

    def _partitions(self, path: str | Path | pd.DataFrame) -> list[pd.DataFrame]:
        if isinstance(path, pd.DataFrame):
            return [path]  # a table already in this process: one partition
        files = parquet_parts(path) if is_partitioned(path) else [Path(path)]
        # Kept by name, size and time: a stage's passes over its input read it once.
        key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())
        if key not in self._read:
            self._read = {key: [read_table(f) for f in files]}
        return self._read[key]

    def _each(self, path: str | Path, columns: Sequence[str] | None) -> Iterator[tuple[pd.DataFrame, int]]:
        offset = 0
        for frame in self._partitions(path):
            yield (frame[list(columns)] if columns is not None else frame), offset
            offset += len(frame)

    def map(self, function: PartitionFunction, path: str | Path, *shared: Any, columns: Sequence[str] | None = None,
            combine: Callable[[list], Any] | None = None) -> Any:
        results = [function(frame, offset, *shared) for frame, offset in self._each(path, columns)]
        return combine(results) if combine is not None else results

    def write(self, function: PartitionFunction, path: str | Path, outputs: Sequence[str | Path],
              *shared: Any) -> list:
        pieces: list[list[pd.DataFrame]] = [[] for _ in outputs]
        results = []
        for frame, offset in self._each(path, None):
            frames, result = function(frame, offset, *shared)
            for piece, part in zip(pieces, frames):
                piece.append(part)
            results.append(result)
        for piece, output in zip(pieces, outputs):
            write_table(pd.concat(piece, ignore_index=True), output)
        return results

    def gather(self, path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
        frames = [frame for frame, _ in self._each(path, columns)]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def repeated_rows(self, path: str | Path, id_columns: Sequence[str]) -> np.ndarray:
        ids = self.gather(path, columns=id_columns)
        return np.flatnonzero(ids.duplicated(keep="first").to_numpy())

    def jobs(self, fits: int) -> int:
        return max(1, min(fits, FITS_PER_CORE * self.workers)) if self.workers > 1 else 1

    def fit_threads(self, model: ModelParams, fits: int) -> int:
        if model.threads == AUTO:
            return max(1, self.workers // self.jobs(fits))
        return model.threads

    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(joblib.parallel_backend("threading", n_jobs=jobs))
        # OpenBLAS gives every call all the cores: with fits side by side that is jobs x cores threads,
        # which made the logistic regressions' grid 3.6x slower on 2 cores. Each fit gets its share.
        stack.enter_context(threadpool_limits(limits=max(1, self.workers // jobs), user_api="blas"))
        return stack

    def fit(self, classifier, path: str | Path, id_columns: Sequence[str]) -> tuple[Any, int]:
        features, y = split_features(self.gather(path), list(id_columns), str(path))
        return classifier.fit(features, y), len(y)


@contextlib.contextmanager
def start() -> Iterator[LocalEngine]:
    yield LocalEngine(local_workers())
