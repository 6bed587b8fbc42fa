"""Windowed as-of aggregation on four engines, on the same synthetic events (issue 30, item 6).

    python -m benchmarks.event_engines --customers 100000 --events-per-customer 50 --out PATH

Makes a customers table and two event tables deterministically (numpy default_rng(0)), writes them as parquet
in a temporary directory laid out as data.events (customers.parquet, orders.parquet, sessions.parquet), and
computes the features stage's table on them (the default params.yaml `features` section: per snapshot cutoff
and customer joined before it, per window of 7, 30, 90 and 365 days the events in [cutoff - N days, cutoff),
their count and sums, and the days since the last event before the cutoff) with:

- `ours`: `stages.lib.features.build.build_part` on the whole customers table, as the features stage runs it
  (without the label, as `stages.predict --as-of` runs it; `ours+label` is one extra run with it), written
  with the stage's `write_table`;
- `duckdb`: one SQL query over the parquet files (a join of the snapshots with each event table on
  time < cutoff, conditional aggregates per window, max for recency), `COPY ... TO` parquet;
- `polars`: a lazy query (a cross join of the snapshots, filter, group_by), streamed to parquet;
- `pandas`: plain pandas groupby, one snapshot at a time (a cross merge of all snapshots would hold
  ~245M rows at 1M customers).

Each engine runs in its own process (its peak RSS from wait4's ru_maxrss; a watchdog kills it past
--memory-limit-gb or --timeout-s) writing its table to parquet; each is timed twice with 2 threads (median)
and once with 1 thread on one core (`taskset -c 0`; DuckDB `SET threads=1`, Polars POLARS_MAX_THREADS=1).
Then each table is compared with ours (counts exactly, sums and recency within 1e-9 relative) and with the
same engine's other runs bit for bit. The result is written in benchmarks/results.py's format.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import results

GB = 1024**3
DAY_NS = 86_400 * 10**9
WINDOWS = (7, 30, 90, 365)
CUTOFFS = ("2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30", "2025-05-31", "2025-06-30")
TABLES = {"orders": ("ordered_at", ("amount",)),
          "sessions": ("started_at", ("pages", "minutes", "basket_adds", "saw_checkout"))}
FLOAT_SUMS = {("orders", "amount"), ("sessions", "minutes")}   # the others are sums of integers
KEYS = ("customer_id", "snapshot_date")
EVENTS_START, EVENTS_END = np.datetime64("2024-01-01", "s"), np.datetime64("2025-08-01", "s")  # 2025-07-31 included
JOINED_START, JOINED_END = np.datetime64("2022-01-01", "D"), np.datetime64("2025-07-01", "D")
ENGINES = ("ours", "duckdb", "polars", "pandas")
VARIANTS = ("ours-parts", "ours-dask", "ours+label", "duckdb-join", "polars-cross")   # on request (--engines)
TOLERANCE = 1e-9


def feature_columns() -> list[str]:
    """The compared columns, named as stages/lib/features/as_of.py names them."""
    columns = []
    for name, (_, sums) in TABLES.items():
        for days in WINDOWS:
            columns.append(f"{name}_count_{days}d")
            columns += [f"{name}_{column}_sum_{days}d" for column in sums]
        columns.append(f"days_since_last_{name}")
    return columns


# --- the data ---------------------------------------------------------------------------------------------------

def generate(folder: Path, customers: int, per_customer: int) -> dict[str, Any]:
    """customers.parquet, orders.parquet and sessions.parquet in `folder`, from default_rng(0); each event table
    in time order (as an export is), its times whole seconds stored as timestamp[ns] (as stages.lib.data.events
    writes them), uniform over 2024-01-01 .. 2025-07-31 but for one in a thousand put exactly on a cutoff or a
    window's start. Customers join at 00:00 of a uniform day in 2022-01-01 .. 2025-06-30."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    ids = (1_000_000 + rng.permutation(customers)).astype(np.int64)
    days = rng.integers(0, int((JOINED_END - JOINED_START).astype(np.int64)), customers)
    joined = (JOINED_START + days).astype("datetime64[ns]")   # dates at 00:00: a join on a cutoff is not before it
    pq.write_table(pa.table({"customer_id": ids, "joined_on": joined}), folder / "customers.parquet",
                   compression="zstd")
    span = int((EVENTS_END - EVENTS_START).astype(np.int64))
    sizes = {}
    for name, rate in (("orders", per_customer / 10), ("sessions", per_customer)):
        counts = rng.poisson(rate, customers)
        size = int(counts.sum())
        customer = np.repeat(ids, counts)
        seconds = rng.integers(0, span, size)
        # One event in a thousand exactly on a cutoff or a window's start, where < and <= differ.
        on_bound = np.flatnonzero(rng.random(size) < 0.001)
        seconds[on_bound] = rng.choice(_bounds(), len(on_bound))
        if name == "orders":
            values = {"amount": rng.lognormal(3.5, 0.8, size)}
        else:
            values = {"pages": 1 + rng.poisson(3.0, size).astype(np.int64),
                      "minutes": rng.exponential(5.0, size),
                      "basket_adds": rng.poisson(0.3, size).astype(np.int64),
                      "saw_checkout": (rng.random(size) < 0.1).astype(np.int8)}
        order = np.argsort(seconds, kind="stable")
        time_column = TABLES[name][0]
        columns = {"customer_id": customer[order],
                   time_column: ((EVENTS_START + seconds[order]).astype("datetime64[ns]"))}
        del customer
        columns.update({column: values.pop(column)[order] for column in list(values)})
        on_bounds = _events_on_bounds(seconds)
        del seconds, order
        pq.write_table(pa.table(columns), folder / f"{name}.parquet", compression="zstd")
        sizes[name] = {"events": size, "events_on_a_window_bound": on_bounds,
                       "file_mb": round((folder / f"{name}.parquet").stat().st_size / 2**20, 1)}
        del columns
    eligible = sum(int((joined < np.datetime64(cutoff, "ns")).sum()) for cutoff in CUTOFFS)
    return {"customers": customers, "events_per_customer": per_customer, "tables": sizes,
            "feature_rows": eligible, "customers_file_mb": round((folder / "customers.parquet").stat().st_size
                                                                  / 2**20, 1)}


def _bounds() -> np.ndarray:
    """Every cutoff and window start, in seconds from EVENTS_START."""
    return np.array([int((np.datetime64(cutoff, "s") - EVENTS_START).astype(np.int64)) - days * 86_400
                     for cutoff in CUTOFFS for days in (0, *WINDOWS)], dtype=np.int64)


def _events_on_bounds(seconds: np.ndarray) -> int:
    """Events exactly at a cutoff or a window's start."""
    return int(np.isin(seconds, _bounds()).sum())


# --- the engines (each in its own process) ----------------------------------------------------------------------

def run_ours(events: Path, output: Path, threads: int, with_label: bool = False) -> dict[str, float]:
    import pandas as pd

    from stages.lib.core.params_features import FeaturesParams
    from stages.lib.core.tables import read_table, write_table
    from stages.lib.features.build import build_part

    started = time.perf_counter()
    features = FeaturesParams()
    assert [f"{d:%Y-%m-%d}" for d in features.snapshot_dates()] == list(CUTOFFS)
    assert tuple(features.windows) == WINDOWS
    customers = read_table(events / "customers.parquet")
    frames, _ = build_part(customers, 0, str(events), features, list(CUTOFFS), with_label)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    computed = time.perf_counter()
    write_table(frame, output)
    return {"compute_s": computed - started, "write_s": time.perf_counter() - computed}


def run_ours_parts(events: Path, output: Path, threads: int, parts: int) -> dict[str, float]:
    """Ours on `parts` equal slices of the customers table, each reading only its customers' events (the event
    files streamed batch by batch, file order kept) and appended to the output as it is made: the memory of a
    part, not of the whole table. `features_as_of` gives the same bits for any partition (its docstring;
    checked here against `ours` at the smaller size)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from stages.lib.core.params_features import FeaturesParams
    from stages.lib.core.tables import read_table
    from stages.lib.data.dates import parse_dates
    from stages.lib.features.as_of import features_as_of
    from stages.lib.features.build import customers_of
    from stages.lib.features.event_tables import EventTable

    started = time.perf_counter()
    features = FeaturesParams()
    table = read_table(events / "customers.parquet")
    bounds = np.linspace(0, len(table), parts + 1).astype(np.int64)
    writer = None
    for start, stop in zip(bounds[:-1], bounds[1:]):
        customers, joined = customers_of(table.iloc[start:stop], int(start), features, "customers")
        ids = customers[features.id_column]
        wanted = pa.array(ids.to_numpy())
        tables = {}
        for name, spec in features.tables.items():
            columns = [features.id_column, spec.timestamp, *spec.sums, *spec.means]
            batches = [batch.filter(pc.is_in(batch[features.id_column], value_set=wanted))
                       for batch in pq.ParquetFile(events / f"{name}.parquet").iter_batches(1 << 20, columns=columns)]
            frame = pa.Table.from_batches(batches).to_pandas()
            del batches
            # As event_tables.read_events builds an EventTable from the table it read.
            time_ns = parse_dates(frame[spec.timestamp], spec.timestamp, 0, name).astype(np.int64)
            values = {column: frame[column].to_numpy(np.float64, na_value=0.0)
                      for column in dict.fromkeys([*spec.sums, *spec.means])}
            position = pd.Index(ids).get_indexer(frame[features.id_column]).astype(np.int64)
            tables[name] = EventTable(name, position, time_ns, values)
            del frame
        part = features_as_of(customers, joined, tables, [pd.Timestamp(c) for c in CUTOFFS], features, False)
        del tables
        arrow = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(None)
        del part
        if writer is None:
            writer = pq.ParquetWriter(output, arrow.schema, compression="zstd")
        writer.write_table(arrow)
        del arrow
    writer.close()
    return {"compute_and_write_s": time.perf_counter() - started}


def run_duckdb(events: Path, output: Path, threads: int, memory_limit: str, spill: Path,
               per_cutoff: bool = True) -> dict[str, float]:
    """One SQL query, COPY'd to parquet. `per_cutoff`: each table's aggregate is a UNION ALL of one GROUP BY
    customer per cutoff over `time < cutoff` (the faster form here); otherwise one GROUP BY (customer,
    snapshot) over the join of the snapshots with the events on `time < cutoff`."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = false")
    snapshots = ", ".join(f"('{cutoff}', '{cutoff} 00:00:00'::TIMESTAMP_NS)" for cutoff in CUTOFFS)
    bounds = ", ".join(f"cutoff - INTERVAL {days} DAY AS lo{days}" for days in WINDOWS)
    ctes = [f"snaps AS (SELECT snapshot_date, cutoff, {bounds} FROM (VALUES {snapshots}) v(snapshot_date, cutoff))",
            f"eligible AS (SELECT c.customer_id, s.snapshot_date, s.cutoff FROM read_parquet('{events}/customers"
            ".parquet') c JOIN snaps s ON c.joined_on < s.cutoff)"]
    outer = ["r.customer_id", "r.snapshot_date"]
    joins = []
    for name, (time_column, sums) in TABLES.items():
        source = f"read_parquet('{events}/{name}.parquet') e"
        if per_cutoff:
            body = " UNION ALL ".join(
                f"SELECT e.customer_id, '{cutoff}' AS snapshot_date, {_aggregates(name, time_column, sums, cutoff)} "
                f"FROM {source} WHERE e.{time_column} < TIMESTAMP_NS '{cutoff}' GROUP BY e.customer_id"
                for cutoff in CUTOFFS)
        else:
            body = (f"SELECT e.customer_id, s.snapshot_date, {_aggregates(name, time_column, sums, None)} FROM "
                    f"{source} JOIN snaps s ON e.{time_column} < s.cutoff GROUP BY e.customer_id, s.snapshot_date")
        ctes.append(f"{name} AS ({body})")
        for days in WINDOWS:
            outer.append(f"coalesce({name}.{name}_count_{days}d, 0)::BIGINT AS {name}_count_{days}d")
            outer += [f"coalesce({name}.{name}_{column}_sum_{days}d, 0)::DOUBLE AS {name}_{column}_sum_{days}d"
                      for column in sums]
        outer.append(f"(epoch_ns(r.cutoff) - epoch_ns({name}.last_{name})) / 86400e9 AS days_since_last_{name}")
        joins.append(f"LEFT JOIN {name} ON {name}.customer_id = r.customer_id AND "
                     f"{name}.snapshot_date = r.snapshot_date")
    query = f"WITH {', '.join(ctes)} SELECT {', '.join(outer)} FROM eligible r {' '.join(joins)}"
    con.execute(f"COPY ({query}) TO '{output}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    return {"compute_and_write_s": time.perf_counter() - started}


def _aggregates(name: str, time_column: str, sums: tuple[str, ...], cutoff: str | None) -> str:
    """A table's aggregates for one cutoff (`cutoff`), or for the joined snapshot row `s` (None)."""
    found = []
    for days in WINDOWS:
        low = f"s.lo{days}" if cutoff is None else f"TIMESTAMP_NS '{cutoff}' - INTERVAL {days} DAY"
        within = f"FILTER (WHERE e.{time_column} >= {low})"
        found.append(f"count(*) {within} AS {name}_count_{days}d")
        # Integer columns summed as integers (exact), the float ones as DOUBLE.
        found += [f"sum(e.{column}) {within} AS {name}_{column}_sum_{days}d" for column in sums]
    return ", ".join([*found, f"max(e.{time_column}) AS last_{name}"])


def run_polars(events: Path, output: Path, threads: int, per_cutoff: bool = True) -> dict[str, float]:
    """One lazy query streamed to parquet. Window sums as `when(in window).then(x).otherwise(0).sum()` (about
    3x faster here than `x.filter(in window).sum()`). `per_cutoff`: each table's aggregate is a concat of one
    group_by customer per cutoff over `time < cutoff`; otherwise one group_by (customer, snapshot) over the
    cross join of the events with the snapshots, filtered on `time < cutoff` (2.2-3.7 GB at 100k here)."""
    import polars as pl  # POLARS_MAX_THREADS is set by the parent, before this import

    assert pl.thread_pool_size() == threads, (pl.thread_pool_size(), threads)
    started = time.perf_counter()
    cutoffs = np.array(CUTOFFS, dtype="datetime64[ns]")
    snaps = pl.LazyFrame({"snapshot_date": list(CUTOFFS), "cutoff": pl.Series(cutoffs)}).with_columns(
        *(pl.col("cutoff").sub(pl.duration(days=days)).alias(f"lo{days}") for days in WINDOWS))
    frame = (pl.scan_parquet(events / "customers.parquet")
             .join(snaps.select("snapshot_date", "cutoff"), how="cross")
             .filter(pl.col("joined_on") < pl.col("cutoff"))
             .select("customer_id", "snapshot_date", "cutoff"))
    outer = [pl.col("customer_id"), pl.col("snapshot_date")]
    for name, (time_column, sums) in TABLES.items():
        aggregates = []
        for days in WINDOWS:
            within = pl.col(time_column) >= pl.col(f"lo{days}")
            aggregates.append(within.sum().cast(pl.Int64).alias(f"{name}_count_{days}d"))
            outer.append(pl.col(f"{name}_count_{days}d").fill_null(0))
            for column in sums:
                sum_name = f"{name}_{column}_sum_{days}d"
                aggregates.append(pl.when(within).then(pl.col(column)).otherwise(0).sum().alias(sum_name))
                outer.append(pl.col(sum_name).fill_null(0).cast(pl.Float64))
        aggregates.append(pl.col(time_column).max().alias(f"last_{name}"))
        outer.append(((pl.col("cutoff") - pl.col(f"last_{name}")).dt.total_nanoseconds() / 86400e9)
                     .alias(f"days_since_last_{name}"))
        scan = pl.scan_parquet(events / f"{name}.parquet").select("customer_id", time_column, *sums)
        if per_cutoff:
            table = pl.concat([
                scan.filter(pl.col(time_column) < pl.lit(cutoff))
                .join(snaps.filter(pl.col("snapshot_date") == text), how="cross")
                .group_by("customer_id", "snapshot_date").agg(aggregates)
                for text, cutoff in zip(CUTOFFS, cutoffs)])
        else:
            table = (scan.join(snaps, how="cross")
                     .filter(pl.col(time_column) < pl.col("cutoff"))
                     .group_by("customer_id", "snapshot_date")
                     .agg(aggregates))
        frame = frame.join(table, on=["customer_id", "snapshot_date"], how="left")
    frame.select(outer).sink_parquet(output, compression="zstd", engine="streaming")
    return {"compute_and_write_s": time.perf_counter() - started}


def run_pandas(events: Path, output: Path, threads: int) -> dict[str, float]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    customers = pd.read_parquet(events / "customers.parquet")
    tables = {name: pd.read_parquet(events / f"{name}.parquet", columns=["customer_id", time_column, *sums])
              for name, (time_column, sums) in TABLES.items()}
    frames = []
    for cutoff in CUTOFFS:
        cut = pd.Timestamp(cutoff)
        rows = customers.loc[customers["joined_on"] < cut, "customer_id"].to_numpy()
        frame = pd.DataFrame({"customer_id": rows, "snapshot_date": cutoff})
        for name, (time_column, sums) in TABLES.items():
            table = tables[name]
            before = table[table[time_column] < cut]
            for days in WINDOWS:
                window = before[before[time_column] >= cut - pd.Timedelta(days=days)]
                grouped = window.groupby("customer_id", sort=False)
                frame[f"{name}_count_{days}d"] = grouped.size().reindex(rows, fill_value=0).to_numpy(np.int64)
                totals = grouped[list(sums)].sum().reindex(rows, fill_value=0)
                for column in sums:
                    frame[f"{name}_{column}_sum_{days}d"] = totals[column].to_numpy(np.float64)
                del window, grouped, totals
            last = before.groupby("customer_id", sort=False)[time_column].max().reindex(rows)
            last = last.to_numpy("datetime64[ns]")
            with np.errstate(invalid="ignore"):
                since = (cut.value - last.view(np.int64)) / DAY_NS
            frame[f"days_since_last_{name}"] = np.where(np.isnat(last), np.nan, since)
            del before
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    computed = time.perf_counter()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), output, compression="zstd")
    return {"compute_s": computed - started, "write_s": time.perf_counter() - computed}


def unload_by_customer(events: Path, folder: Path, parts: int) -> None:
    """The customers and every event table as `parts` parquet files each, sorted by customer ID and cut at the
    same IDs (file k of every table holds the events of customers file k): a warehouse unload clustered by
    customer. Within a customer the events keep their order in the export."""
    import pyarrow.parquet as pq

    customers = pq.read_table(events / "customers.parquet").sort_by("customer_id")
    ids = customers["customer_id"].to_numpy()
    bounds = np.linspace(0, len(ids), parts + 1).astype(np.int64)
    first_ids = ids[bounds[1:-1]]
    for name, table in [("customers", customers), *((name, None) for name in TABLES)]:
        if table is None:
            table = pq.read_table(events / f"{name}.parquet")
            table = table.take(np.argsort(table["customer_id"].to_numpy(), kind="stable"))
        cuts = [0, *np.searchsorted(table["customer_id"].to_numpy(), first_ids), len(table)]
        (folder / name).mkdir(parents=True)
        for number, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
            pq.write_table(table.slice(start, stop - start), folder / name / f"part-{number:05d}.parquet",
                           compression="zstd")
        del table


def _memory_high_water() -> int:
    """This process's peak resident bytes since it started its program (VmHWM; ru_maxrss would carry the
    peak of the process a worker was forked from across its exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_ours_dask(events: Path, output: Path, threads: int, parts: int) -> dict[str, float]:
    """Ours on the Dask engine, as `compute.engine: dask` runs the features stage (a LocalCluster of one
    single-threaded worker per core, or the cluster Dask's configuration names): the events first unloaded by
    customer (`unload_by_customer`, in a process of its own, timed apart as `unload_s`), then each customers
    file built on a worker from its own range of IDs, written as a directory of parts.
    `worker_peak_rss_gb`: the largest worker's."""
    from stages.lib.core.params_features import FeaturesParams
    from stages.lib.engines.base import open_engine
    from stages.lib.features.build import build_part

    started = time.perf_counter()
    clustered = output.parent / f"{output.stem}-events"
    # In a process of its own, so this one's peak memory is the stage's, not the unload's.
    unloader = multiprocessing.get_context("spawn").Process(target=unload_by_customer, args=(events, clustered, parts))
    unloader.start()
    unloader.join()
    if unloader.exitcode:
        raise RuntimeError(f"unloading the events by customer failed (exit {unloader.exitcode})")
    unloaded = time.perf_counter()
    with open_engine("dask") as engine:
        engine.write(build_part, clustered / "customers", [output], str(clustered), FeaturesParams(),
                     list(CUTOFFS), False)
        peaks = engine.client.run(_memory_high_water)
    shutil.rmtree(clustered)
    return {"unload_s": unloaded - started, "compute_and_write_s": time.perf_counter() - unloaded,
            "worker_peak_rss_gb": max(peaks.values()) / GB, "workers": len(peaks)}


def child(args: argparse.Namespace) -> None:
    """One engine run in this process; its timings and own peak RSS as JSON on the last line of stdout."""
    import resource

    events, output = Path(args.events), Path(args.output)
    if args.engine in ("ours", "ours+label"):
        timings = run_ours(events, output, args.threads, with_label=args.engine == "ours+label")
    elif args.engine == "ours-parts":
        timings = run_ours_parts(events, output, args.threads, args.ours_parts)
    elif args.engine == "ours-dask":
        timings = run_ours_dask(events, output, args.threads, args.ours_parts)
    elif args.engine in ("duckdb", "duckdb-join"):
        timings = run_duckdb(events, output, args.threads, args.duckdb_memory_limit, output.parent / "spill",
                             per_cutoff=args.engine == "duckdb")
    elif args.engine in ("polars", "polars-cross"):
        timings = run_polars(events, output, args.threads, per_cutoff=args.engine == "polars")
    else:
        timings = run_pandas(events, output, args.threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({**timings, "self_peak_rss_gb": peak / GB}))


# --- measuring --------------------------------------------------------------------------------------------------

def measure(command: list[str], env: dict[str, str], memory_limit_gb: float, timeout_s: float) -> dict[str, Any]:
    """Run `command`; its wall time, peak RSS (wait4), the sampled peak, and why it was stopped, if it was."""
    import psutil

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped: list[str] = []
    sampled = [0]

    def watch() -> None:
        try:
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                rss = watched.memory_info().rss
                sampled[0] = max(sampled[0], rss)
                if rss > memory_limit_gb * GB:
                    stopped.append(f"killed: RSS {rss / GB:.2f} GB passed the {memory_limit_gb} GB limit")
                    process.kill()
                elif time.perf_counter() - started > timeout_s:
                    stopped.append(f"killed: still running after {timeout_s:.0f} s")
                    process.kill()
                time.sleep(0.1)
        except psutil.NoSuchProcess:
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out_lines: list[str] = []
    reader = threading.Thread(target=lambda: out_lines.extend(process.stdout), daemon=True)
    reader.start()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    watcher.join(timeout=1)
    figures: dict[str, Any] = {"process_wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / GB,
                               "sampled_peak_rss_gb": sampled[0] / GB, "cpu_s": usage.ru_utime + usage.ru_stime,
                               "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    if process.returncode != 0 or stopped:
        figures["failed"] = stopped[0] if stopped else f"exit {process.returncode}: {err.strip()[-2000:]}"
        return figures
    if out_lines:
        figures.update(json.loads(out_lines[-1]))
    figures["seconds"] = figures.get("compute_and_write_s", figures.get("compute_s", 0) + figures.get("write_s", 0))
    return figures


def compare(ours: Path, theirs: Path, exact: bool) -> dict[str, Any]:
    """Two feature tables, row by row after sorting by (snapshot_date, customer_id): `exact` says whether every
    value is the same bits; otherwise whether counts are equal, sums and recency within TOLERANCE relative."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def order(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys = pq.read_table(path, columns=list(KEYS))
        snapshot = pc.cast(keys["snapshot_date"], "string").to_numpy(zero_copy_only=False)
        codes = np.searchsorted(np.array(CUTOFFS, dtype=object), snapshot)
        customer = keys["customer_id"].to_numpy()
        rows = np.lexsort((customer, codes))
        return rows, codes[rows], customer[rows]

    a_rows, a_snap, a_customer = order(ours)
    b_rows, b_snap, b_customer = order(theirs)
    if len(a_rows) != len(b_rows) or not (np.array_equal(a_snap, b_snap) and np.array_equal(a_customer, b_customer)):
        return {"equal": False, "rows": [len(a_rows), len(b_rows)], "why": "different (snapshot, customer) rows"}
    del a_snap, a_customer, b_snap, b_customer
    found: dict[str, Any] = {"equal": True, "rows": len(a_rows), "columns_not_bit_identical": [],
                             "max_relative_difference": {}}
    for column in feature_columns():
        a = _values(pq.read_table(ours, columns=[column])[column])[a_rows]
        b = _values(pq.read_table(theirs, columns=[column])[column])[b_rows]
        if "_count_" in column:
            a, b = a.astype(np.int64), b.astype(np.int64)
            same_bits = np.array_equal(a, b)
            if not same_bits:
                found["equal"] = False
                found.setdefault("count_mismatches", {})[column] = int((a != b).sum())
            if not same_bits:
                found["columns_not_bit_identical"].append(column)
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        a_bits, b_bits = np.where(nan_a, np.nan, a).view(np.int64), np.where(nan_b, np.nan, b).view(np.int64)
        same_bits = np.array_equal(nan_a, nan_b) and np.array_equal(a_bits[~nan_a], b_bits[~nan_b])
        if not same_bits:
            found["columns_not_bit_identical"].append(column)
        if not np.array_equal(nan_a, nan_b):
            found["equal"] = False
            found.setdefault("missing_mismatches", {})[column] = int((nan_a != nan_b).sum())
            continue
        x, y = a[~nan_a], b[~nan_b]
        scale = np.maximum(np.abs(x), np.abs(y))
        relative = np.divide(np.abs(x - y), scale, out=np.zeros_like(x), where=scale > 0)
        worst = float(relative.max()) if len(relative) else 0.0
        if worst:
            found["max_relative_difference"][column] = worst
        if worst > TOLERANCE:
            found["equal"] = False
    found["bit_identical"] = not found["columns_not_bit_identical"]
    if exact:
        return {"bit_identical": found["bit_identical"],
                "columns_not_bit_identical": found["columns_not_bit_identical"],
                "max_relative_difference": found["max_relative_difference"]}
    return found


def _values(column) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type) and column.null_count == 0:
        return column.to_numpy()
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)   # a null reads as NaN


def machine_facts() -> dict[str, Any]:
    facts = results.machine()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in lscpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)"):
            facts[f"lscpu {key.strip()}"] = value.strip()
    return facts


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def size_label(customers: int) -> str:
    for unit, name in ((1_000_000, "m"), (1_000, "k")):
        if customers >= unit and customers % unit == 0:
            return f"{customers // unit}{name}"
    return str(customers)


def parent(args: argparse.Namespace) -> None:
    import resource
    from importlib import metadata

    config = f"event-engines-{size_label(args.customers)}"
    options = {"customers": args.customers, "events_per_customer": args.events_per_customer,
               "engines": args.engines, "timed_runs_2_threads": args.runs, "memory_limit_gb": args.memory_limit_gb,
               "timeout_s": args.timeout_s, "duckdb_memory_limit": args.duckdb_memory_limit,
               "ours_parts": args.ours_parts,
               "windows": list(WINDOWS), "snapshots": list(CUTOFFS), "tolerance": TOLERANCE}
    result = results.new_result(config, "event-engines", options)
    for package in ("duckdb", "polars", "polars-runtime-32", "psutil"):
        try:
            result["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    result["machine"] = machine_facts()
    result["uptime"] = {"before": uptime()}
    out = Path(args.out) if args.out else results.path_of(result)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(complete: bool = False) -> None:
        result["uptime"]["after"] = uptime()
        result["load"]["after"] = results.load_average()
        result["complete"] = complete
        out.write_text(json.dumps(result, indent=2) + "\n")

    work = Path(tempfile.mkdtemp(prefix="event-engines-", dir=args.tmp))
    events = work / "events"
    events.mkdir()
    try:
        generated = measure([sys.executable, "-m", "benchmarks.event_engines", "--generate", str(events),
                             "--customers", str(args.customers), "--events-per-customer",
                             str(args.events_per_customer)], dict(os.environ), args.memory_limit_gb, args.timeout_s)
        if "failed" in generated:
            raise SystemExit(f"generating the events failed: {generated['failed']}")
        result["figures"]["data"] = json.loads((events / "sizes.json").read_text())
        result["figures"]["data"]["generate_s"] = generated["process_wall_s"]
        print(f"data: {result['figures']['data']}", flush=True)
        engines: dict[str, Any] = result["figures"].setdefault("engines", {})
        save()
        reference = None
        for engine in args.engines:
            runs = [(f"run{k + 1}", 2) for k in range(args.runs if engine != "ours+label" else 1)]
            if args.thread_check and engine != "ours+label":
                runs.append(("threads1", 1))
            entry: dict[str, Any] = {"runs": {}}
            engines[engine] = entry
            outputs = {}
            for run, threads in runs:
                output = work / f"{engine}-{run}.parquet"
                env = dict(os.environ, POLARS_MAX_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                           OPENBLAS_NUM_THREADS=str(threads))
                command = [sys.executable, "-m", "benchmarks.event_engines", "--engine", engine, "--events",
                           str(events), "--output", str(output), "--threads", str(threads),
                           "--duckdb-memory-limit", args.duckdb_memory_limit, "--ours-parts", str(args.ours_parts)]
                if threads == 1:
                    command = ["taskset", "-c", "0", *command]
                figures = measure(command, env, args.memory_limit_gb, args.timeout_s)
                figures["threads"] = threads
                entry["runs"][run] = figures
                print(f"{engine} {run}: {json.dumps(figures)}", flush=True)
                save()
                if "failed" in figures:
                    break
                outputs[run] = output
            timed = [entry["runs"][run] for run, threads in runs if threads == 2 and run in outputs]
            if timed:
                entry["seconds"] = statistics.median(f["seconds"] for f in timed)
                entry["process_wall_s"] = statistics.median(f["process_wall_s"] for f in timed)
                entry["peak_rss_gb"] = max(f["peak_rss_gb"] for f in timed)
                entry["cpu_s"] = statistics.median(f["cpu_s"] for f in timed)
            failed = [f["failed"] for f in entry["runs"].values() if "failed" in f]
            if failed:
                entry["failed"] = failed[0]
            if "run1" in outputs and "threads1" in outputs:
                entry["threads1_seconds"] = entry["runs"]["threads1"]["seconds"]
                entry["threads1_peak_rss_gb"] = entry["runs"]["threads1"]["peak_rss_gb"]
                entry["threads1_cpu_s"] = entry["runs"]["threads1"]["cpu_s"]
            if engine in ("ours", "ours-parts") and "run1" in outputs and reference is None:
                reference = outputs["run1"]
                result["figures"]["reference"] = engine
            if "run1" in outputs and reference is not None:
                entry["versus_ours"] = compare(reference, outputs["run1"], exact=False)
                entry["equal_to_ours"] = entry["versus_ours"]["equal"]
                entry["bit_identical_to_ours"] = entry["versus_ours"]["bit_identical"]
            if "run1" in outputs and "run2" in outputs:
                entry["run1_vs_run2"] = compare(outputs["run1"], outputs["run2"], exact=True)
                entry["bit_identical_between_runs"] = entry["run1_vs_run2"]["bit_identical"]
            if "run1" in outputs and "threads1" in outputs:
                entry["threads2_vs_threads1"] = compare(outputs["run1"], outputs["threads1"], exact=True)
                entry["bit_identical_across_threads"] = entry["threads2_vs_threads1"]["bit_identical"]
            for output in outputs.values():
                if output != reference:
                    shutil.rmtree(output) if output.is_dir() else output.unlink(missing_ok=True)
            print(f"{engine}: " + json.dumps({k: v for k, v in entry.items() if k != "runs"}), flush=True)
            save()
        result["figures"]["parent_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
        save(complete=True)
        print(f"wrote {out}")
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events-per-customer", type=int, default=50)
    parser.add_argument("--out", help="the result JSON (default: benchmarks/results/<machine>/<commit>/"
                                      "event-engines-<N>.json)")
    parser.add_argument("--engines", type=lambda text: text.split(","), default=list(ENGINES),
                        help=f"comma-separated, from {', '.join(ENGINES + VARIANTS)} (default: the first four)")
    parser.add_argument("--runs", type=int, default=2, help="timed runs with 2 threads (the median is reported)")
    parser.add_argument("--no-thread-check", dest="thread_check", action="store_false",
                        help="skip the 1-thread run (and the bit comparison across thread counts)")
    parser.add_argument("--memory-limit-gb", type=float, default=6.0, help="kill a run whose RSS passes this")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="kill a run still going after this")
    parser.add_argument("--duckdb-memory-limit", default="3.5GB", help="DuckDB's memory_limit (it spills past it)")
    parser.add_argument("--ours-parts", type=int, default=4,
                        help="customer parts of the ours-parts and ours-dask engines")
    parser.add_argument("--tmp", default=None, help="where the temporary events and outputs go")
    parser.add_argument("--keep-data", action="store_true")
    # Internal: one child process's work.
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--events", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        sizes = generate(Path(args.generate), args.customers, args.events_per_customer)
        (Path(args.generate) / "sizes.json").write_text(json.dumps(sizes))
    elif args.engine:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
