"""Benchmark the pipeline at several data sizes: time, CPU and memory per stage.

For each size the repository is copied (its git-tracked files) into a temporary
directory, params.yaml is set to generate that many customers, and every stage
of dvc.yaml runs in DAG order with the command `dvc repro` would run. Each stage
runs as a child process, so its wall time, CPU time (user + sys, its worker
processes included) and peak memory are its own; PROPENSITY_PROFILE makes the
model stages log the time spent inside LightGBM's fit and in oversampling.
Then `dvc commit` records the outputs (the hashing a real `dvc repro` also
does) and `dvc repro` is timed with nothing changed. With stages/predict.py
present, scoring `--score-rows` new customers is timed too.

Then the run's quality: metrics/metrics.json's test average precision, the
ideal scorer's and the ratio, and the baselines evaluate fitted on the same
split (logistic regression, default LightGBM); and FLAML's LightGBM AutoML
(`--flaml-budget` seconds) on the same processed training split, scored on the
same test split, run by the FLAML environment's interpreter (`--flaml-python`;
benchmarks/requirements.txt), so the pipeline's environment never imports FLAML.
`--own-table` adds a run on tests/helpers.py's own_customer_table() (3,000 rows,
"Yes"/"No" target), a user's own export rather than the generated data;
`--three-column-table` one on three_column_table() (10,000 rows whose log-odds
are linear in one column: where a logistic regression is the right model).

    python -m benchmarks.run --rows 10000 100000 1000000

Writes <output>.json and <output>.md (default benchmarks/results) and prints
the table. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.markdown import markdown
from benchmarks.measure import child_env, machine, profile_totals, run_measured
from benchmarks.targets import DEFAULT_LABEL, OWN_TABLE_LABEL, THREE_COLUMN_LABEL, check_targets
from tests.helpers import (
    OWN_TABLE_DATA,
    REPO_ROOT,
    THREE_COLUMN_DATA,
    edit_params_file,
    new_repo,
    own_customer_table,
    three_column_table,
)

# Tables of a user's kind rather than the generated customers: the table, and the `data` params that read it.
TABLES = {OWN_TABLE_LABEL: (own_customer_table, OWN_TABLE_DATA),
          THREE_COLUMN_LABEL: (three_column_table, THREE_COLUMN_DATA)}

MODEL_STAGES = ("tune", "calibrate", "train")
PARTS_PATH = "data/parts"  # data.path of the runs with --parquet-parts
FLAML_SCRIPT = Path(__file__).resolve().parent / "flaml_baseline.py"
# Where benchmarks/README.md tells to create the FLAML environment; --flaml-python or FLAML_PYTHON override it.
DEFAULT_FLAML_PYTHON = os.environ.get("FLAML_PYTHON", "/tmp/flaml-venv/bin/python")


def dvc_paths(workdir: Path) -> dict[str, str]:
    """dvc.yaml's `paths` (the processed splits' locations)."""
    for entry in yaml.safe_load((workdir / "dvc.yaml").read_text()).get("vars", []):
        if isinstance(entry, dict) and "paths" in entry:
            return entry["paths"]
    return {"train": "data/processed/train.parquet", "test": "data/processed/test.parquet"}


BASELINE_KEYS = ("average_precision", "roc_auc", "average_precision_difference_se")


def pipeline_quality(workdir: Path) -> dict[str, Any]:
    """The test split's ranking quality from the run's metrics/metrics.json: model, ideal scorer, baselines;
    and from metrics/tune.json, the family that shipped and the comparison that chose it."""
    metrics = json.loads((workdir / "metrics" / "metrics.json").read_text())
    tune = json.loads((workdir / "metrics" / "tune.json").read_text())
    ideal = metrics.get("ideal") or {}
    return {
        "test_rows": metrics["test_rows"],
        "test_buyers": metrics["actual_buyers"],
        "average_precision": metrics["average_precision"],
        "roc_auc": metrics["roc_auc"],
        "ideal_average_precision": ideal.get("average_precision"),
        "average_precision_ratio": ideal.get("average_precision_ratio"),
        "baselines": {name: {key: values[key] for key in BASELINE_KEYS if key in values}
                      for name, values in (metrics.get("baselines") or {}).items()},
        "family": tune.get("family", "lightgbm"),
        "comparison": tune.get("comparison"),
    }


def flaml_quality(workdir: Path, flaml: dict[str, Any] | None, log: Path) -> dict[str, Any]:
    """FLAML's LightGBM AutoML on the run's processed training split, scored on its test split.

    A child process of the FLAML environment's interpreter; "not run" (with the reason) when that
    environment is absent or the search fails, so the rest of the benchmark stands.
    """
    if flaml is None:
        return {"status": "not run", "reason": "--no-flaml"}
    python = Path(flaml["python"])
    if not python.is_file():
        return {"status": "not run", "reason": f"no FLAML environment: {python} is absent "
                "(benchmarks/requirements.txt says how to create it)"}
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    paths = dvc_paths(workdir)
    output = workdir / "flaml.json"
    command = [str(python), str(FLAML_SCRIPT), "--train", paths["train"], "--test", paths["test"],
               "--id-columns", *params["data"]["id_columns"], "--budget", str(flaml["budget"]),
               "--seed", str(params["base"]["seed"]), "--jobs", str(flaml["jobs"]), "--output", str(output)]
    # Not child_env(): the pipeline venv's PATH and the profiling hook stay out of FLAML's process.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROPENSITY_PROFILE")}
    measured = run_measured(command, workdir, env, log)
    if measured["exit_code"] != 0 or not output.is_file():
        return {"status": "failed", "reason": f"exit code {measured['exit_code']}, see {log}", **measured}
    return {"status": "run", **json.loads(output.read_text()), **measured}


def stage_commands(workdir: Path) -> list[tuple[str, str]]:
    """(stage name, resolved command) in the order `dvc repro` runs them."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        graph = repo.index.graph
        written = {stage.name: i for i, stage in enumerate(repo.index.stages)}
        # Edges point from a stage to the stages it depends on.
        ordered = list(nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: written[s.name]))
        return [(stage.name, stage.cmd) for stage in ordered if stage.cmd]


def benchmark_size(label: str, overrides: dict[str, Any], keep: bool, score_rows: int | None,
                   log_dir: Path, table: str | None = None, flaml: dict[str, Any] | None = None,
                   parquet_parts: int | None = None) -> dict[str, Any]:
    """Run the whole pipeline once in a fresh copy of the repository, then measure its quality.

    `table`: a name in TABLES; the pipeline learns from that table instead of the generated customers.
    `flaml`: {"python", "budget", "jobs"} for the FLAML baseline, None to skip it.
    `parquet_parts`: the generated table is rewritten (unmeasured) as that many parquet files in
    PARTS_PATH, which data.path must name (a warehouse unload; with compute.engine dask, the
    partitioned path of every stage).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"propensity-bench-{label.replace(' ', '-')}-"))
    log = log_dir / f"{label.replace(' ', '-')}.log"
    log.unlink(missing_ok=True)
    result: dict[str, Any] = {"label": label, "params": overrides, "stages": [], "completed": False}
    if keep:
        result["workdir"] = str(workdir)
    try:
        # The committed params.yaml as the base: the default run measures what `dvc repro` does on main.
        new_repo(workdir, overrides, base=yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
        result["rows"] = yaml.safe_load((workdir / "params.yaml").read_text())["generate"]["rows"]
        if table is not None:
            make, data = TABLES[table]
            frame = make()
            path = workdir / data["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            result["rows"] = len(frame)
            buyers = (frame[data["target"]].astype(str) == str(data["positive_label"])).mean()
            result["table"] = (f"tests/helpers.py {make.__name__}(): {len(frame):,} rows, "
                               f"{frame.shape[1] - 2} feature columns, target \"{data['target']}\" "
                               f"({buyers:.1%} \"{data['positive_label']}\")")
        print(f"[{label}] {result['rows']:,} rows in {workdir}", file=sys.stderr)
        for stage, command in stage_commands(workdir):
            profile = workdir / f".profile-{stage}.jsonl"
            measured = run_measured(shlex.split(command), workdir, child_env(profile), log)
            record = {"stage": stage, **measured}
            if stage in MODEL_STAGES:
                record.update(profile_totals(profile))
            result["stages"].append(record)
            print(f"[{label}] {stage}: {measured['wall_s']:.1f} s wall, {measured['cpu_s']:.1f} s CPU, "
                  f"{measured['peak_rss_mb']:,.0f} MB", file=sys.stderr)
            if measured["exit_code"] != 0:
                result["failed_stage"] = stage
                return result
            if stage == "generate" and parquet_parts:
                # In a child process: a measured command's peak memory starts from its parent's.
                subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from tests.helpers import parquet_parts_of; "
                                "parquet_parts_of(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))",
                                str(workdir / "data/raw/customers.csv"), str(workdir / PARTS_PATH),
                                str(parquet_parts)], cwd=REPO_ROOT, env=child_env(), check=True)
        result["stages_wall_s"] = round(sum(s["wall_s"] for s in result["stages"]), 3)
        result["dvc_commit_s"] = run_measured(["dvc", "commit", "-f", "-q"], workdir, child_env(), log)["wall_s"]
        noop = run_measured(["dvc", "repro"], workdir, child_env(), log)
        result["noop_repro_s"] = noop["wall_s"]
        status = subprocess.run(["dvc", "status", "-q"], cwd=workdir, env=child_env(), capture_output=True)
        result["up_to_date_after_noop"] = status.returncode == 0 and not status.stdout.strip()
        result["total_wall_s"] = round(result["stages_wall_s"] + result["dvc_commit_s"], 3)
        result["peak_rss_mb"] = max(s["peak_rss_mb"] for s in result["stages"])
        result["completed"] = True
        if score_rows and (workdir / "stages" / "predict.py").is_file():
            result["scoring"] = benchmark_scoring(workdir, score_rows, log)
        result["quality"] = pipeline_quality(workdir)
        result["quality"]["baselines"]["flaml"] = flaml_quality(workdir, flaml, log)
        print(f"[{label}] test average precision {quality_line(result['quality'])}", file=sys.stderr)
        return result
    finally:
        if keep:
            print(f"[{label}] kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def benchmark_scoring(workdir: Path, rows: int, log: Path) -> dict[str, Any]:
    """Time `stages.predict` on `rows` newly generated customers with the model just trained."""
    score_dir = workdir / "scoring"
    score_dir.mkdir()
    params = score_dir / "params.yaml"
    shutil.copy(workdir / "params.yaml", params)
    # Another seed: customers the model has never seen.
    edit_params_file(params, {"generate.rows": rows, "base.seed": 7})
    customers = score_dir / "customers.csv"
    prepared = run_measured(
        ["python", "-m", "stages.generate", "--params", str(params), "--output", str(customers),
         "--probabilities", str(score_dir / "probabilities.parquet")], workdir, child_env(), log)
    if prepared["exit_code"] != 0:
        return {"rows": rows, "exit_code": prepared["exit_code"], "note": "generating the input failed"}
    measured = run_measured(["python", "-m", "stages.predict", "--input", str(customers),
                             "--output", str(score_dir / "scores.csv")], workdir, child_env(), log)
    return {"rows": rows, "input": "csv", **measured}


def quality_line(quality: dict[str, Any]) -> str:
    parts = [f"pipeline {quality['average_precision']:.4f}"]
    for name, values in quality["baselines"].items():
        ap = values.get("average_precision")
        parts.append(f"{name} {ap:.4f}" if ap is not None else f"{name} {values.get('status', 'not run')}")
    return ", ".join(parts)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {pair!r}: use KEY=VALUE, e.g. --set tune.n_points=2")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="generate.rows of each run (default: 10000 100000 1000000)")
    parser.add_argument("--tune-sample-rows", type=int, default=None,
                        help="tune.sample_rows (and calibration.sample_rows) for the sized runs; 0: all rows "
                             "(default: params.yaml's, auto)")
    parser.add_argument("--calibration-sample-rows", type=int, default=None,
                        help="calibration.sample_rows (default: as --tune-sample-rows)")
    parser.add_argument("--no-default", action="store_true",
                        help="skip the run of the committed params.yaml as it is")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra params for the sized runs, e.g. --set tune.n_points=2")
    parser.add_argument("--score-rows", type=int, default=1_000_000,
                        help="customers scored with stages.predict after the last run (0: skip)")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results"),
                        help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs already in OUTPUT.json, replacing those with the same label")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--own-table", action="store_true",
                        help="also run on tests/helpers.py's own_customer_table() (3,000 rows, a user's export)")
    parser.add_argument("--three-column-table", action="store_true",
                        help="also run on tests/helpers.py's three_column_table() (10,000 rows, log-odds linear "
                             "in one column)")
    parser.add_argument("--flaml-python", default=DEFAULT_FLAML_PYTHON,
                        help="interpreter of the FLAML environment (benchmarks/requirements.txt; default "
                             "$FLAML_PYTHON or /tmp/flaml-venv/bin/python); absent: FLAML is recorded as not run")
    parser.add_argument("--flaml-budget", type=float, default=60, help="FLAML's time_budget in seconds")
    parser.add_argument("--flaml-jobs", type=int, default=2, help="FLAML's n_jobs (LightGBM threads)")
    parser.add_argument("--no-flaml", action="store_true", help="skip the FLAML baseline")
    parser.add_argument("--parquet-parts", type=int, default=None,
                        help=f"the sized runs read the generated table as this many parquet files ({PARTS_PATH})")
    args = parser.parse_args(argv)
    flaml = None if args.no_flaml else {"python": args.flaml_python, "budget": args.flaml_budget,
                                        "jobs": args.flaml_jobs}

    sized = parse_overrides(args.set)
    if args.tune_sample_rows is not None:
        sized["tune.sample_rows"] = args.tune_sample_rows or None
    calibration_rows = args.tune_sample_rows if args.calibration_sample_rows is None else args.calibration_sample_rows
    if calibration_rows is not None:
        sized["calibration.sample_rows"] = calibration_rows or None
    plan = [] if args.no_default else [(DEFAULT_LABEL, {})]
    # The committed params, reading the own table instead of the generated customers.
    plan += [(OWN_TABLE_LABEL, {"data": dict(OWN_TABLE_DATA)})] if args.own_table else []
    plan += [(THREE_COLUMN_LABEL, {"data": dict(THREE_COLUMN_DATA)})] if args.three_column_table else []
    if args.parquet_parts:
        sized["data.path"] = PARTS_PATH
    plan += [(f"{rows:,}", {"generate.rows": rows, **sized}) for rows in sorted(args.rows)]

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log_dir = output.parent / "logs"
    log_dir.mkdir(exist_ok=True)
    runs: list[dict] = []
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    commands: list[str] = []
    json_path = output.with_suffix(".json")
    if args.merge and json_path.is_file():
        previous = json.loads(json_path.read_text())
        runs, commands = previous["runs"], previous.get("commands", [])
    # Scoring generated customers needs a model of the generated table's columns.
    scored_label = next((label for label, _ in reversed(plan) if label not in TABLES), None)
    for label, overrides in plan:
        parts = args.parquet_parts if label != DEFAULT_LABEL and label not in TABLES else None
        run = benchmark_size(label, overrides, args.keep, args.score_rows if label == scored_label else None,
                             log_dir, table=label if label in TABLES else None, flaml=flaml, parquet_parts=parts)
        runs = [r for r in runs if r["label"] != label] + [run]
        runs.sort(key=lambda r: (r["label"] != DEFAULT_LABEL, r.get("rows", 0)))
        results = {"machine": machine(), "commands": commands + [command],
                   "runs": runs, "targets": check_targets(runs)}
        # Written after every run, so a long run that is stopped keeps what it measured.
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        output.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    scored = all(r.get("scoring", {}).get("exit_code", 0) == 0 for r in runs)
    return 0 if scored and all(r.get("completed") for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
