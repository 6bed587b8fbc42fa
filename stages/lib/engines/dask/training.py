"""The final LightGBM fit on a Dask cluster: lightgbm.dask's data-parallel training, as a plain LGBMClassifier.

Each row goes to the worker a seeded hash of its row number names (every worker's
rows a random share of the table: LightGBM bins each feature on them); each worker
collects its rows from every file, in table order, so no process holds the table.
Partitions are pinned to workers (sorted by address) and ranked in partition
order: the same rows, params and number of workers give the same model; another
number of workers another, equally good one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.hashing import row_numbers, seeded_hash
from stages.lib.core.tables import parquet_rows
from stages.lib.engines.dask.cluster import quiet_logger, read_part


def fit_on_workers(client, parts: list[str], offsets: list[int], classifier, columns: Sequence[str],
                   label: str) -> tuple[Any, int]:
    """`classifier` fitted on every row of the table whose files are `parts`, on its `columns` and `label`."""
    import dask

    # The levels of the categories from a file that has rows (a file without rows keeps none).
    lengths = client.gather([client.submit(_rows, part, pure=False) for part in parts])
    meta = client.submit(_no_rows, parts[next((i for i, n in enumerate(lengths) if n), 0)], pure=False).result()
    categories = {c: meta[c].cat.categories for c in meta.columns if isinstance(meta[c].dtype, pd.CategoricalDtype)}
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    seed = classifier.get_params()["random_state"]
    cuts = [dask.delayed(_rows_by_worker, nout=len(workers))(part, offset, seed, len(workers))
            for part, offset in zip(parts, offsets)]
    futures = [client.compute(dask.delayed(_worker_partition)([cut[number] for cut in cuts], categories),
                              workers=[worker], allow_other_workers=False)
               for number, worker in enumerate(workers)]
    rows = sum(client.gather([client.submit(len, future, pure=False) for future in futures]))
    return _fit(futures, meta, list(columns), label, classifier, client), rows


def _rows(part) -> int:
    """A partition's rows: a file's from its footer, or the frame sent to the cluster."""
    return len(part) if isinstance(part, pd.DataFrame) else parquet_rows(part)


def _no_rows(part) -> pd.DataFrame:
    """A partition's columns and dtypes (categories with their levels), without its rows."""
    return read_part(part, None).iloc[:0]


def _rows_by_worker(part: str, offset: int, seed: int, workers: int) -> list[pd.DataFrame]:
    """One file's rows cut by the worker that trains on them: a seeded hash of each row's number."""
    frame = read_part(part, None)
    which = seeded_hash(row_numbers(offset, len(frame)), seed, "worker") % np.uint64(workers)
    return [frame[which == worker].reset_index(drop=True) for worker in range(workers)]


def _worker_partition(pieces: list[pd.DataFrame], categories: dict[str, pd.Index]) -> pd.DataFrame:
    """A worker's rows from every file, in table order, every categorical with the first file's levels."""
    frame = pd.concat(pieces, ignore_index=True)
    for column, levels in categories.items():
        frame[column] = frame[column].cat.set_categories(levels)
    return frame


class _RankedClient:
    """A distributed Client whose who_has() lists the data in partition order.

    lightgbm.dask (4.7.0) gives LightGBM's machine ranks in the order of
    Client.who_has(), which distributed does not keep from run to run; rank 0
    then differs, and so does the model. In partition order, the worker holding
    partition 0 is rank 0 every time.
    """

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def who_has(self, futures=None, **kwargs):
        found = self._client.who_has(futures, **kwargs)
        return {future.key: sorted(found[future.key]) for future in futures}


def _fit(futures: list, meta: pd.DataFrame, columns: list[str], label: str, classifier, client):
    """Fit DaskLGBMClassifier on partitions already on their workers (one each, in worker order) and
    return it as a plain LGBMClassifier."""
    import warnings

    import dask.dataframe as dd
    import lightgbm
    from lightgbm.dask import DaskLGBMClassifier

    table = dd.from_delayed(futures, meta=meta, verify_meta=False)
    # lightgbm.dask gives each worker's LightGBM that worker's Dask threads (num_threads): n_jobs is not passed.
    settings = {k: v for k, v in classifier.get_params().items() if k != "n_jobs"}
    model = DaskLGBMClassifier(client=_RankedClient(client), **settings)
    logger = lightgbm.basic._LOGGER
    lightgbm.register_logger(quiet_logger())  # lightgbm.dask's own progress lines in this process
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            model.fit(table[columns], table[label])
    finally:
        lightgbm.register_logger(logger)
    # A plain LGBMClassifier; models.without_machine takes the run's network (ports) out of it.
    return model.to_local()


