"""The `pipeline` kind: the whole pipeline at several data sizes, its time, CPU and memory per stage,
and its quality beside the baselines.

For each run the project is copied (benchmarks/workdir.py) into a temporary directory, params.yaml
is set to that run's params, and every stage of dvc.yaml runs in DAG order with the command
`dvc repro` would run. Each stage runs as a child process, so its wall time, CPU time (user + sys,
its worker processes included) and peak memory are its own; PROPENSITY_PROFILE makes the model
stages log the time spent inside LightGBM's fit and in oversampling. Then `dvc commit` records the
outputs (the hashing a real `dvc repro` also does) and `dvc repro` is timed with nothing changed.
After the last run on generated data, scoring `score_rows` new customers is timed too.

Then the run's quality: metrics/metrics.json's test average precision, the ideal scorer's and the
ratio, and the baselines evaluate fitted on the same split (logistic regression, default LightGBM);
and FLAML's LightGBM AutoML on the same processed training split, scored on the same test split, run
by the FLAML environment's interpreter (benchmarks/requirements.txt), so the pipeline's environment
never imports FLAML.

Options (benchmarks/configs.yaml):
- `default`: also run the committed params.yaml as it is (label "default");
- `tables`: also run on example tables of a user's kind (stages/lib/data/examples.py): `own table`
  (3,000 rows, "Yes"/"No" target), `three-column table` (10,000 rows whose log-odds are linear in
  one column: where a logistic regression is the right model);
- `rows`: generate.rows of each sized run, with `params` (dotted keys) on top of the committed ones;
- `parquet_parts`: the sized runs read the generated table as that many parquet files;
- `score_rows`: customers scored with stages.predict after the last run (0: none);
- `flaml`: {budget, jobs}, or null to skip FLAML; the FLAML interpreter is $FLAML_PYTHON or
  /tmp/flaml-venv/bin/python, and FLAML is recorded as not run without it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.markdown import markdown
from benchmarks.measure import child_env, profile_totals, run_measured
from benchmarks.results import ROOT
from benchmarks.scoring import new_customers, predict
from benchmarks.targets import DEFAULT_LABEL, OWN_TABLE_LABEL, THREE_COLUMN_LABEL, check_targets
from benchmarks.workdir import project_copy, set_params
from stages.lib.data.examples import OWN_TABLE_DATA, THREE_COLUMN_DATA, own_customer_table, three_column_table

# Tables of a user's kind rather than the generated customers: the table, and the `data` params that read it.
TABLES = {OWN_TABLE_LABEL: (own_customer_table, OWN_TABLE_DATA),
          THREE_COLUMN_LABEL: (three_column_table, THREE_COLUMN_DATA)}

MODEL_STAGES = ("tune", "calibrate", "train")
PARTS_PATH = "data/parts"  # data.path of the runs with --parquet-parts
FLAML_SCRIPT = Path(__file__).resolve().parent / "flaml_baseline.py"
# Where benchmarks/requirements.txt tells to create the FLAML environment; FLAML_PYTHON overrides it.
FLAML_PYTHON = os.environ.get("FLAML_PYTHON", "/tmp/flaml-venv/bin/python")


def dvc_paths(workdir: Path) -> dict[str, str]:
    """dvc.yaml's `paths` (the processed splits' locations)."""
    for entry in yaml.safe_load((workdir / "dvc.yaml").read_text()).get("vars", []):
        if isinstance(entry, dict) and "paths" in entry:
            return entry["paths"]
    return {"train": "data/processed/train.parquet", "test": "data/processed/test.parquet"}


BASELINE_KEYS = ("average_precision", "roc_auc", "average_precision_difference_se")


def pipeline_quality(workdir: Path) -> dict[str, Any]:
    """The test split's ranking quality from the run's metrics/metrics.json: model, ideal scorer, baselines;
    and from metrics/tune.json, the family that shipped, the comparison that chose it and the search's edges."""
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
        "edges": tune.get("lightgbm", {}).get("edges", {}),
    }


def flaml_quality(workdir: Path, flaml: dict[str, Any] | None, log: Path) -> dict[str, Any]:
    """FLAML's LightGBM AutoML on the run's processed training split, scored on its test split.

    A child process of the FLAML environment's interpreter; "not run" (with the reason) when that
    environment is absent or the search fails, so the rest of the benchmark stands.
    """
    if flaml is None:
        return {"status": "not run", "reason": "flaml: null in the config"}
    python = Path(FLAML_PYTHON)
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
    `flaml`: {"budget", "jobs"} for the FLAML baseline, None to skip it.
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
        project_copy(workdir)
        set_params(workdir / "params.yaml", overrides)
        result["rows"] = yaml.safe_load((workdir / "params.yaml").read_text())["generate"]["rows"]
        if table is not None:
            make, data = TABLES[table]
            frame = make()
            path = workdir / data["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            result["rows"] = len(frame)
            buyers = (frame[data["target"]].astype(str) == str(data["positive_label"])).mean()
            result["table"] = (f"stages/lib/data/examples.py {make.__name__}(): {len(frame):,} rows, "
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
                                "from stages.lib.data.examples import parquet_parts_of; "
                                "parquet_parts_of(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))",
                                str(workdir / "data/raw/customers.csv"), str(workdir / PARTS_PATH),
                                str(parquet_parts)], cwd=ROOT, env=child_env(), check=True)
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
    customers = new_customers(workdir, rows, log)
    if customers is None:
        return {"rows": rows, "exit_code": 1, "note": "generating the input failed"}
    return {"rows": rows, "input": "csv", **predict(workdir, customers, [], log)}


def quality_line(quality: dict[str, Any]) -> str:
    parts = [f"pipeline {quality['average_precision']:.4f}"]
    for name, values in quality["baselines"].items():
        ap = values.get("average_precision")
        parts.append(f"{name} {ap:.4f}" if ap is not None else f"{name} {values.get('status', 'not run')}")
    return ", ".join(parts)


def run(options: dict[str, Any], figures: dict[str, Any], save: Callable[[], Any], logs: Path) -> bool:
    """Run the plan `options` give, filling `figures` ({"runs", "targets"}) and saving after every run;
    True when every run completed and scored."""
    sized = dict(options.get("params") or {})
    if options.get("parquet_parts"):
        sized["data.path"] = PARTS_PATH
    plan = [(DEFAULT_LABEL, {})] if options.get("default") else []
    # The committed params, reading an example table instead of the generated customers.
    plan += [(label, {"data": dict(TABLES[label][1])}) for label in options.get("tables") or []]
    plan += [(f"{rows:,}", {"generate.rows": rows, **sized}) for rows in sorted(options.get("rows") or [])]
    # Scoring generated customers needs a model of the generated table's columns.
    scored_label = next((label for label, _ in reversed(plan) if label not in TABLES), None)
    runs = figures.setdefault("runs", [])
    for label, overrides in plan:
        parts = options.get("parquet_parts") if label != DEFAULT_LABEL and label not in TABLES else None
        runs.append(benchmark_size(label, overrides, options.get("keep", False),
                                   options.get("score_rows") if label == scored_label else None, logs,
                                   table=label if label in TABLES else None, flaml=options.get("flaml"),
                                   parquet_parts=parts))
        figures["targets"] = check_targets(runs)
        save()
    scored = all(r.get("scoring", {}).get("exit_code", 0) == 0 for r in runs)
    return scored and all(r.get("completed") for r in runs)


def summary(result: dict[str, Any]) -> str:
    return markdown(result)
