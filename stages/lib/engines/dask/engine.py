"""The Dask engine: partition functions, independent fits and the final fit on a Dask cluster.

The only module of the project that imports dask or distributed. Where the
cluster is, is Dask's own configuration, never params.yaml or git: with
DASK_SCHEDULER_ADDRESS set (or `scheduler-address` in ~/.config/dask/*.yaml) the
stage connects to that scheduler; without it, it starts a LocalCluster with one
single-threaded worker process per usable core and closes it when done.

- Partition functions run on the workers, one task per file of a table, each
  reading its own file, so no process holds a partitioned table; only their
  (small) results come back, combined in a tree of tasks where asked.
- Independent fits go through joblib's Dask backend (tune's cross-validation,
  calibrate's folds, evaluate's baselines): one worker thread each.
- The final fit is lightgbm.dask's data-parallel training, each worker on its
  share of the rows, returned as a plain LGBMClassifier.

A cluster that cannot run the project (a scheduler or worker without its code,
an address nobody answers at, a worker lost mid-stage) ends the stage with one
ClusterError line and the outputs as they were.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.errors import ClusterError, DataError
from stages.lib.core.files import atomic_directory, first_line
from stages.lib.core.params import AUTO, ModelParams
from stages.lib.core.tables import (
    PARQUET_SUFFIXES,
    PART_NAME,
    is_partitioned,
    parquet_parts,
    parquet_rows,
    read_table,
    write_table,
)
from stages.lib.data.sampling import row_numbers, seeded_hash
from stages.lib.data.schema import LABEL, feature_columns_of
from stages.lib.engines.base import Engine, PartitionFunction, usable_cores

# How long a stage waits for the scheduler DASK_SCHEDULER_ADDRESS names before it gives up.
CONNECT_TIMEOUT = "5s"
# A module every task needs: the scheduler and each worker must import it (the project's code and
# its pinned libraries) before any work is sent, or the work would wait for them forever.
PROJECT_MODULE = "stages.lib.engines.dask.engine"
# Results combined per task in `map(..., combine=...)`: no task holds more than this many.
FAN_IN = 8
ROW = "__row__"


def scheduler_address() -> str | None:
    """The scheduler Dask's configuration names (DASK_SCHEDULER_ADDRESS, ~/.config/dask/*.yaml), or None."""
    import dask

    dask.config.refresh()  # the environment may have changed since dask was imported (tests do that)
    return dask.config.get("scheduler-address", None)


def _gist(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"


def _read(part: str, columns: Sequence[str] | None) -> pd.DataFrame:
    try:
        return read_table(part, list(columns) if columns is not None else None)
    except DataError as error:
        raise DataError(f"{error}; on a cluster, every Dask worker must see this path (a shared file system)") \
            from None


def _apply(function: PartitionFunction, part: str, offset: int, columns, shared: tuple) -> Any:
    return function(_read(part, columns), offset, *shared)


def _write_part(function: PartitionFunction, part: str, offset: int, destinations: list[Path], shared: tuple) -> Any:
    frames, result = function(_read(part, None), offset, *shared)
    for frame, destination in zip(frames, destinations):
        write_table(frame, destination)
    return result


def _identity(frame: pd.DataFrame, offset: int) -> pd.DataFrame:
    return frame


def _ids_with_rows(part: str, offset: int, id_columns: list[str]) -> pd.DataFrame:
    ids = _read(part, id_columns)
    return ids.assign(**{ROW: np.arange(offset, offset + len(ids), dtype=np.int64)})


def _repeats(frame: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """The row numbers of every repeat of an ID but its first row (all of an ID's rows are in `frame`)."""
    ordered = frame.sort_values(ROW, kind="stable")
    return ordered.loc[ordered.duplicated(subset=id_columns, keep="first"), ROW]


class DaskEngine(Engine):
    name = "dask"

    def __init__(self, client):
        self.client = client
        self.workers = max(1, sum(client.nthreads().values()))
        self._layouts: dict[tuple, tuple[list[str], list[int]]] = {}

    def jobs(self, fits: int) -> int:
        return max(1, min(fits, self.workers))

    def fit_threads(self, model: ModelParams, fits: int) -> int:
        # Each fit holds one worker thread: the cluster's threads are the parallelism.
        return 1 if model.threads == AUTO else model.threads

    def _joblib_backend(self, jobs: int) -> contextlib.AbstractContextManager:
        import joblib

        return joblib.parallel_backend("dask")

    def _layout(self, path: str | Path) -> tuple[list[str], list[int]]:
        """The table's files (as the workers see them) and the number of each file's first row."""
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

    def map(self, function: PartitionFunction, path: str | Path, *shared: Any, columns: Sequence[str] | None = None,
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

    def write(self, function: PartitionFunction, path: str | Path, outputs: Sequence[str | Path],
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

    def gather(self, path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return pd.concat(self.map(_identity, path, columns=columns), ignore_index=True)

    def repeated_rows(self, path: str | Path, id_columns: Sequence[str]) -> np.ndarray:
        import dask
        import dask.dataframe as dd

        parts, offsets = self._layout(path)
        ids = [dask.delayed(_ids_with_rows)(part, offset, list(id_columns)) for part, offset in zip(parts, offsets)]
        if len(ids) == 1:
            repeats = dask.delayed(_repeats)(ids[0], list(id_columns)).compute()
        else:
            meta = _ids_with_rows(parts[0], 0, list(id_columns)).iloc[:0]
            table = dd.from_delayed(ids, meta=meta, verify_meta=False)
            repeats = table.shuffle(on=list(id_columns)).map_partitions(
                _repeats, list(id_columns), meta=(ROW, "int64")).compute()
        return np.sort(repeats.to_numpy(np.int64))

    def fit(self, classifier, path: str | Path, id_columns: Sequence[str]) -> tuple[Any, int]:
        """lightgbm.dask.DaskLGBMClassifier on every worker's share of the rows, as a plain LGBMClassifier.

        Each row goes to the worker a seeded hash of its row number names (every worker's rows a
        random share of the table: LightGBM bins each feature on them); each worker collects its
        rows from every file, in table order, so no process holds the table. Partitions are pinned
        to workers (sorted by address) and ranked in partition order: the same rows, params and
        number of workers give the same model; another number of workers another, equally good one.
        """
        import dask

        parts, offsets = self._layout(path)
        first = _read(parts[0], None)
        categories = {c: first[c].cat.categories for c in first.columns
                      if isinstance(first[c].dtype, pd.CategoricalDtype)}
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        seed = classifier.get_params()["random_state"]
        cuts = [dask.delayed(_rows_by_worker, nout=len(workers))(part, offset, seed, len(workers))
                for part, offset in zip(parts, offsets)]
        futures = [self.client.compute(dask.delayed(_worker_partition)([cut[number] for cut in cuts], categories),
                                       workers=[worker], allow_other_workers=False)
                   for number, worker in enumerate(workers)]
        columns = feature_columns_of(first, list(id_columns))
        rows = sum(self.client.gather([self.client.submit(len, future, pure=False) for future in futures]))
        return _fit_on_workers(futures, first.iloc[:0], columns, classifier, self.client), rows

    def score_partitions(self, path: str | Path, output: str | Path, score: PartitionFunction, keys: list[str],
                         finish: Callable[..., dict[str, np.ndarray]], dropped: list[str],
                         shared: tuple) -> tuple[dict[str, np.ndarray], list]:
        """Score a parquet table partition by partition on the cluster and write it as a directory of parquet
        files, one per partition, in input order; for `stages.predict --engine dask`.

        `score(partition, offset, *shared)` scores one partition on a worker and returns (scored
        partition, summary); the scored partitions stay there and only their `keys` columns and
        summaries come back, for `finish(*keys)` to compute columns
        that need every row at once (ranks); those go back to the workers, which add them, drop the
        `dropped` columns and write the files. Returns the keys of every row and each partition's summary.
        """
        parts, offsets = self._layout(path)
        client = self.client
        sent = self._shared(shared)
        results = [client.submit(_apply, score, part, offset, None, sent, pure=False)
                   for part, offset in zip(parts, offsets)]
        scored = [client.submit(operator.itemgetter(0), result, pure=False) for result in results]
        summaries = client.gather([client.submit(operator.itemgetter(1), result, pure=False) for result in results])
        pieces = client.gather([client.submit(_columns, frame, keys, pure=False) for frame in scored])
        values = {key: np.concatenate([piece[key] for piece in pieces]) for key in keys}
        finished = finish(*(values[key] for key in keys))
        bounds = np.concatenate([[0], np.cumsum([len(piece[keys[0]]) for piece in pieces])]).astype(int)
        with atomic_directory(output, holds=PARQUET_SUFFIXES) as folder:
            client.gather([
                client.submit(_finished_part, frame, {name: column[a:b] for name, column in finished.items()},
                              dropped, folder.resolve() / PART_NAME.format(number), pure=False)
                for number, (frame, a, b) in enumerate(zip(scored, bounds[:-1], bounds[1:]))])
        return values, summaries


def _rows_by_worker(part: str, offset: int, seed: int, workers: int) -> list[pd.DataFrame]:
    """One file's rows cut by the worker that trains on them: a seeded hash of each row's number."""
    frame = _read(part, None)
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


def _fit_on_workers(futures: list, meta: pd.DataFrame, columns: list[str], classifier, client):
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
    lightgbm.register_logger(_quiet_logger())  # lightgbm.dask's own progress lines in this process
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            model.fit(table[columns], table[LABEL])
    finally:
        lightgbm.register_logger(logger)
    # A plain LGBMClassifier; models.without_machine takes the run's network (ports) out of it.
    return model.to_local()


def _columns(frame: pd.DataFrame, keys: list[str]) -> dict[str, np.ndarray]:
    return {key: frame[key].to_numpy() for key in keys}


def _finished_part(frame: pd.DataFrame, columns: dict[str, np.ndarray], dropped: list[str], destination: Path) -> None:
    write_table(frame.drop(columns=dropped).assign(**columns), destination)


def lost_cluster(error: BaseException) -> bool:
    """Whether an error raised while a Dask cluster ran the stage's work means a worker or the scheduler
    went away (not a bug or bad data, which keep their own messages)."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    if isinstance(error, (KilledWorker, FutureCancelledError, CommClosedError)):
        return True
    # lightgbm.dask: a machine whose peer died fails in LightGBM's network code.
    text = str(error).lower()
    return type(error).__name__ == "LightGBMError" and any(word in text for word in ("socket", "connect", "network"))


def _quiet_logger() -> logging.Logger:
    quiet = logging.getLogger("stages.lightgbm")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def _quiet_lightgbm() -> None:
    """On a worker: LightGBM's Python log lines go nowhere."""
    import lightgbm

    lightgbm.register_logger(_quiet_logger())


def _without_stdout() -> None:
    """On a worker of the stage's own LocalCluster, whose standard output is the stage's: nothing a task
    prints there reaches the terminal. lightgbm.dask sets up the machines' network before it passes any
    params, from threads LightGBM starts itself, so its [Info] lines cannot be silenced any other way."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _check_code(client, name: str) -> None:
    """Every process of the cluster imports the project's code, or the stage stops now with one line."""
    for who, call in ((name, client.run_on_scheduler), (f"the workers of {name}", client.run)):
        try:
            call(exec, f"import {PROJECT_MODULE}")
        except Exception as error:
            raise ClusterError(
                f"{who} cannot import this project's code ({_gist(error)}); start "
                f"{'it' if call == client.run_on_scheduler else 'them'} from a checkout of this commit with its "
                "requirements.txt installed and PYTHONPATH set to the checkout (docs/scaling-out.md)"
            ) from None
    client.run(_quiet_lightgbm)


def _answers(address: str) -> None:
    """Connect to `address` and complete Dask's handshake within CONNECT_TIMEOUT, or raise.

    distributed's Client bounds the connection but not the handshake: at a port where another
    program listens (a web server, say) it would wait forever.
    """
    import asyncio

    import dask
    from distributed.comm import connect

    seconds = dask.utils.parse_timedelta(CONNECT_TIMEOUT)

    async def handshake() -> None:
        comm = await connect(address, timeout=seconds)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(handshake(), seconds))
    except TimeoutError:
        raise TimeoutError(f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT}") from None


@contextlib.contextmanager
def start() -> Iterator[DaskEngine]:
    """A DaskEngine on the cluster Dask's configuration names, or on a LocalCluster of this machine."""
    from distributed import Client, LocalCluster

    address = scheduler_address()
    name = f"the Dask scheduler at {address}" if address else "the local Dask cluster"
    with contextlib.ExitStack() as stack:
        try:
            if address:
                _answers(address)
                client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT))
            else:
                cluster = stack.enter_context(LocalCluster(
                    n_workers=usable_cores(), threads_per_worker=1, processes=True,
                    dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
                client = stack.enter_context(Client(cluster))
                client.run(_without_stdout)
        except Exception as error:
            if address:
                raise ClusterError(f"cannot reach the Dask scheduler at {address} (DASK_SCHEDULER_ADDRESS or Dask's "
                                   f"config): {_gist(error)}; start it, fix the address, or unset it to run on this "
                                   "machine") from None
            raise ClusterError(f"cannot start a local Dask cluster: {_gist(error)}; check Dask's configuration "
                               "(~/.config/dask, DASK_* variables) or use compute.engine: local") from None
        _check_code(client, name)
        try:
            yield DaskEngine(client)
        except Exception as error:
            if not lost_cluster(error):
                raise
            raise ClusterError(
                f"{name} lost a worker or its connection mid-stage ({_gist(error)}); outputs were left "
                "as they were; check that every worker is running and has the memory it needs "
                "(its log says why it stopped), then run the stage again"
            ) from None
