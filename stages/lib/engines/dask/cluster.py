"""Connecting the Dask engine to a cluster: Dask's configuration names it, or a LocalCluster of this machine.

Where the cluster is, is Dask's own configuration, never params.yaml or git: with
DASK_SCHEDULER_ADDRESS set (or `scheduler-address` in ~/.config/dask/*.yaml) the
stage connects to that scheduler; without it, it starts a LocalCluster with one
single-threaded worker process per usable core and closes it when done. A
cluster that cannot run the project (a scheduler or worker without its code, an
address nobody answers at, a worker lost mid-stage) ends the stage with one
ClusterError line and the outputs as they were.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import pandas as pd

from stages.lib.core.cores import usable_cores
from stages.lib.core.errors import ClusterError, DataError
from stages.lib.core.files import first_line
from stages.lib.core.tables import read_table

# How long a stage waits for the scheduler DASK_SCHEDULER_ADDRESS names before it gives up.
CONNECT_TIMEOUT = "5s"
# A module every task needs: the scheduler and each worker must import it (the project's code and
# its pinned libraries) before any work is sent, or the work would wait for them forever.
PROJECT_MODULE = "stages.lib.engines.dask.engine"


def scheduler_address() -> str | None:
    """The scheduler Dask's configuration names (DASK_SCHEDULER_ADDRESS, ~/.config/dask/*.yaml), or None."""
    import dask

    dask.config.refresh()  # the environment may have changed since dask was imported (tests do that)
    return dask.config.get("scheduler-address", None)


def gist(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"


def read_part(part: str | pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    """On a worker: a partition of a table, read from its file (or the frame sent to the cluster)."""
    if isinstance(part, pd.DataFrame):
        return part if columns is None else part[list(columns)]
    try:
        return read_table(part, list(columns) if columns is not None else None)
    except DataError as error:
        raise DataError(f"{error}; on a cluster, every Dask worker must see this path (a shared file system)") \
            from None


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


def quiet_logger() -> logging.Logger:
    quiet = logging.getLogger("stages.lightgbm")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def _quiet_lightgbm() -> None:
    """On a worker: LightGBM's Python log lines go nowhere."""
    import lightgbm

    lightgbm.register_logger(quiet_logger())


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
                f"{who} cannot import this project's code ({gist(error)}); start "
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
def connected() -> Iterator[tuple]:
    """(a Client of the cluster Dask's configuration names, or of a LocalCluster of this machine, and the
    cluster's name for messages); a lost worker or scheduler in the block is one ClusterError."""
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
                                   f"config): {gist(error)}; start it, fix the address, or unset it to run on this "
                                   "machine") from None
            raise ClusterError(f"cannot start a local Dask cluster: {gist(error)}; check Dask's configuration "
                               "(~/.config/dask, DASK_* variables) or use compute.engine: local") from None
        _check_code(client, name)
        try:
            yield client, name
        except Exception as error:
            if not lost_cluster(error):
                raise
            raise ClusterError(
                f"{name} lost a worker or its connection mid-stage ({gist(error)}); outputs were left "
                "as they were; check that every worker is running and has the memory it needs "
                "(its log says why it stopped), then run the stage again"
            ) from None
