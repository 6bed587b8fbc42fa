"""The `dask-preprocess` kind: preprocess on one process (compute.engine local) against a LocalCluster
(compute.engine dask).

Generates `rows` customers as the pipeline does (with the config's `params`, edits to the committed
params.yaml), writes them as `parts` parquet files (a warehouse
unload; each count given), and runs `python -m stages.preprocess` on that directory once with each
engine, measuring wall time and the peak memory of the stage's process tree (with dask, the
LocalCluster's worker processes are in it) and of its largest process.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.markdown import about, table
from benchmarks.measure import child_env, run_measured
from benchmarks.results import ROOT as REPO
from benchmarks.workdir import set_params
from stages.lib.core.params import load_params
from stages.lib.data.synthetic import generate_customers


def write_parts(rows: int, parts_counts: list[int], work: Path) -> None:
    """ROWS generated customers, once as each number of parquet files (`work/customers-ROWS-PARTS`)."""
    params = load_params(work / "params.yaml")
    customers, _ = generate_customers(params.generate.model_copy(update={"rows": rows}), params.base.seed)
    for parts in parts_counts:
        folder = work / f"customers-{rows}-{parts}"
        folder.mkdir(parents=True)
        for number, chunk in enumerate(np.array_split(np.arange(len(customers)), parts)):
            customers.iloc[chunk].to_parquet(folder / f"customers-{number:05d}.parquet", index=False)


def params_file(engine: str, data_path: Path, work: Path, destination: Path) -> Path:
    set_params(destination, {"compute.engine": engine, "data.path": str(data_path)}, source=work / "params.yaml")
    return destination


def measure(rows: int, parts_counts: list[int], work: Path) -> list[dict]:
    # Generated in a child process: a measured command's peak memory (ru_maxrss) starts from the memory
    # of the process that forks it, so this one must stay small.
    writer = multiprocessing.get_context("spawn").Process(target=write_parts, args=(rows, parts_counts, work))
    writer.start()
    writer.join()
    records = []
    for parts in parts_counts:
        source = work / f"customers-{rows}-{parts}"
        for engine in ("local", "dask"):
            out = work / f"{engine}-{rows}-{parts}"
            out.mkdir()
            params = params_file(engine, source, work, out / "params.yaml")
            result = run_measured(
                [sys.executable, "-m", "stages.preprocess", "--params", str(params), "--input", str(source),
                 "--train", str(out / "train.parquet"), "--test", str(out / "test.parquet"),
                 "--preprocessor", str(out / "preprocessor.joblib")],
                cwd=REPO, env=child_env(), log=work / "preprocess.log")
            records.append({"rows": rows, "parts": parts, "rows_per_part": rows // parts, "engine": engine,
                            **result})
            shutil.rmtree(out)
        shutil.rmtree(source)
    return records


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    records = figures.setdefault("records", [])
    with tempfile.TemporaryDirectory() as work:
        set_params(Path(work) / "params.yaml", options.get("params", {}), source=REPO / "params.yaml")
        for rows in options["rows"]:
            records += measure(rows, options["parts"], Path(work))
            save()
    return all(record["exit_code"] == 0 for record in records)


def summary(result: dict[str, Any]) -> str:
    records = result["figures"]["records"]
    return about(result) + "\n\n" + table(
        ["customers", "files", "engine", "wall s", "peak MB (process tree)", "largest process MB", "load"],
        [[f"{r['rows']:,}", str(r["parts"]), r["engine"], f"{r['wall_s']:.1f}", f"{r['peak_rss_mb']:,.0f}",
          f"{r['largest_process_rss_mb']:,.0f}", str(r["load_average"])] for r in records], "rrlrrrr") + "\n"
