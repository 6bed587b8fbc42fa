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

    python -m benchmarks.run --rows 10000 100000 1000000 --tune-sample-rows 200000

Writes <output>.json and <output>.md (default benchmarks/results) and prints
the table. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE_ENV = "PROPENSITY_PROFILE"  # read by stages/modeling.py
PROFILE_HOOK = Path(__file__).resolve().parent / "profile_hook"
MODEL_STAGES = ("tune", "calibrate", "train")
DEFAULT_LABEL = "default"
MB = 1024 * 1024

# The targets of the performance issue, checked against the measured runs.
SCRATCH_REPRO_LIMIT_S = 300
NOOP_REPRO_LIMIT_S = 3
ONE_MILLION_LIMIT_S = 15 * 60
ONE_MILLION_MEMORY_LIMIT_MB = 6 * 1024
TEN_MILLION_MEMORY_LIMIT_MB = 16 * 1024
TIME_PER_ROW_GROWTH_LIMIT = 1.5
TRAIN_OUTSIDE_LIGHTGBM_LIMIT = 0.25


class TreeMemorySampler(threading.Thread):
    """Samples the summed resident memory of a process and all its descendants.

    ru_maxrss is the peak of the single largest process; parallel workers add
    up, and their sum is what exhausts a machine's memory.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            total = 0
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_measured(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run one command; return its wall and CPU seconds, peak memory and exit code."""
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        # wait4 gives the child's own rusage, including the workers it waited for;
        # RUSAGE_CHILDREN of this process would mix all stages together.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
    largest_process_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        # Other work on the machine stretches wall time; the 1-minute load average says how much there was.
        "load_average": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(max(largest_process_mb, sampler.peak_bytes / MB), 1),
        "largest_process_rss_mb": round(largest_process_mb, 1),
        "exit_code": process.returncode,
    }


def profile_totals(path: Path) -> dict[str, Any]:
    """Sum the LightGBM-fit and oversampling durations a stage logged."""
    totals = {"lightgbm_fit_s": 0.0, "lightgbm_fits": 0, "oversample_s": 0.0}
    if not path.is_file():
        return totals
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "lightgbm_fit":
            totals["lightgbm_fit_s"] += record["seconds"]
            totals["lightgbm_fits"] += 1
        elif record["event"] == "oversample":
            totals["oversample_s"] += record["seconds"]
    totals["lightgbm_fit_s"] = round(totals["lightgbm_fit_s"], 3)
    totals["oversample_s"] = round(totals["oversample_s"], 3)
    return totals


def copy_repository(destination: Path) -> None:
    """Copy the working tree's tracked (and new, unignored) files; make it a git repo for dvc."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    git = ["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "benchmark snapshot"]):
        subprocess.run(git + command, cwd=destination, check=True, capture_output=True)


def set_params(path: Path, overrides: dict[str, Any]) -> None:
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        section = params
        *parents, key = dotted.split(".")
        for name in parents:
            section = section[name]
        section[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


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


def child_env(profile: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # `python` and `dvc` in stage commands must be this interpreter's environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop(PROFILE_ENV, None)
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
        # Every process of the stage, workers too, imports the timer (profile_hook/sitecustomize.py);
        # the working directory is the repository copy, so `stages` resolves there.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROFILE_HOOK), ".", env.get("PYTHONPATH")]))
    return env


def benchmark_size(label: str, overrides: dict[str, Any], keep: bool, score_rows: int | None,
                   log_dir: Path) -> dict[str, Any]:
    """Run the whole pipeline once in a fresh copy of the repository."""
    workdir = Path(tempfile.mkdtemp(prefix=f"propensity-bench-{label}-"))
    log = log_dir / f"{label}.log"
    log.unlink(missing_ok=True)
    result: dict[str, Any] = {"label": label, "params": overrides, "stages": [], "completed": False}
    try:
        copy_repository(workdir)
        set_params(workdir / "params.yaml", overrides)
        result["rows"] = yaml.safe_load((workdir / "params.yaml").read_text())["generate"]["rows"]
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
    set_params(params, {"generate.rows": rows, "base.seed": 7})
    customers = score_dir / "customers.csv"
    prepared = run_measured(
        ["python", "-m", "stages.generate", "--params", str(params), "--output", str(customers),
         "--probabilities", str(score_dir / "probabilities.parquet")], workdir, child_env(), log)
    if prepared["exit_code"] != 0:
        return {"rows": rows, "exit_code": prepared["exit_code"], "note": "generating the input failed"}
    measured = run_measured(["python", "-m", "stages.predict", "--input", str(customers),
                             "--output", str(score_dir / "scores.csv")], workdir, child_env(), log)
    return {"rows": rows, "input": "csv", **measured}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import lightgbm

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
    }


def _run(runs: list[dict], label: str) -> dict | None:
    return next((r for r in runs if r["label"] == label and r.get("completed")), None)


def _by_rows(runs: list[dict], rows: int) -> dict | None:
    return next((r for r in runs if r["label"] != DEFAULT_LABEL and r.get("rows") == rows), None)


def _stage(run: dict, name: str) -> dict | None:
    return next((s for s in run["stages"] if s["stage"] == name), None)


def _target(name: str, limit: str, measured: str | None, met: bool | None, margin: str = "") -> dict:
    return {"target": name, "limit": limit, "measured": measured or "not run",
            "met": met, "margin": margin if measured else ""}


def _over(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return f"{limit - value:,.1f} {unit} to spare"
    return f"missed by {value - limit:,.1f} {unit} ({value / limit - 1:.0%})"


def check_targets(runs: list[dict]) -> list[dict]:
    targets = []
    default = _run(runs, DEFAULT_LABEL)
    total = default["total_wall_s"] if default else None
    targets.append(_target("committed default `dvc repro` from scratch", f"<= {SCRATCH_REPRO_LIMIT_S} s",
                           f"{total:.1f} s" if default else None,
                           total <= SCRATCH_REPRO_LIMIT_S if default else None,
                           _over(total, SCRATCH_REPRO_LIMIT_S, "s") if default else ""))
    noop = default["noop_repro_s"] if default else None
    targets.append(_target("`dvc repro` with nothing changed", f"< {NOOP_REPRO_LIMIT_S} s",
                           f"{noop:.2f} s" if default else None,
                           noop < NOOP_REPRO_LIMIT_S if default else None,
                           _over(noop, NOOP_REPRO_LIMIT_S, "s") if default else ""))
    million = _by_rows(runs, 1_000_000)
    done = bool(million and million.get("completed"))
    targets.append(_target("1,000,000 rows end to end", f"< {ONE_MILLION_LIMIT_S} s",
                           f"{million['total_wall_s']:.0f} s" if done else None,
                           million["total_wall_s"] < ONE_MILLION_LIMIT_S if done else None,
                           _over(million["total_wall_s"], ONE_MILLION_LIMIT_S, "s") if done else ""))
    targets.append(_target("1,000,000 rows peak memory", f"< {ONE_MILLION_MEMORY_LIMIT_MB:,} MB",
                           f"{million['peak_rss_mb']:,.0f} MB" if done else None,
                           million["peak_rss_mb"] < ONE_MILLION_MEMORY_LIMIT_MB if done else None,
                           _over(million["peak_rss_mb"], ONE_MILLION_MEMORY_LIMIT_MB, "MB") if done else ""))
    train = _stage(million, "train") if done else None
    if train and train.get("lightgbm_fit_s"):
        share = (train["wall_s"] - train["lightgbm_fit_s"]) / train["wall_s"]
        targets.append(_target("1,000,000 rows: train stage time outside LightGBM's fit",
                               f"<= {TRAIN_OUTSIDE_LIGHTGBM_LIMIT:.0%}", f"{share:.1%}",
                               share <= TRAIN_OUTSIDE_LIGHTGBM_LIMIT,
                               f"{(TRAIN_OUTSIDE_LIGHTGBM_LIMIT - share) * 100:.1f} points to spare"
                               if share <= TRAIN_OUTSIDE_LIGHTGBM_LIMIT
                               else f"missed by {(share - TRAIN_OUTSIDE_LIGHTGBM_LIMIT) * 100:.1f} points"))
    else:
        targets.append(_target("1,000,000 rows: train stage time outside LightGBM's fit",
                               f"<= {TRAIN_OUTSIDE_LIGHTGBM_LIMIT:.0%}", None, None))
    ten = _by_rows(runs, 10_000_000)
    ten_done = bool(ten and ten.get("completed"))
    targets.append(_target("10,000,000 rows completes", "completes",
                           ("completed" if ten_done else f"failed in {ten.get('failed_stage')}") if ten else None,
                           ten_done if ten else None))
    targets.append(_target("10,000,000 rows peak memory", f"< {TEN_MILLION_MEMORY_LIMIT_MB:,} MB",
                           f"{ten['peak_rss_mb']:,.0f} MB" if ten_done else None,
                           ten["peak_rss_mb"] < TEN_MILLION_MEMORY_LIMIT_MB if ten_done else None,
                           _over(ten["peak_rss_mb"], TEN_MILLION_MEMORY_LIMIT_MB, "MB") if ten_done else ""))
    if ten_done and done:
        growth = (ten["total_wall_s"] / ten["rows"]) / (million["total_wall_s"] / million["rows"])
        targets.append(_target("time per row, 10M vs 1M", f"<= {TIME_PER_ROW_GROWTH_LIMIT}x", f"{growth:.2f}x",
                               growth <= TIME_PER_ROW_GROWTH_LIMIT, _over(growth, TIME_PER_ROW_GROWTH_LIMIT, "x")))
    else:
        targets.append(_target("time per row, 10M vs 1M", f"<= {TIME_PER_ROW_GROWTH_LIMIT}x", None, None))
    return targets


def _cell(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}, LightGBM {m['lightgbm']}.",
        "",
        *[f"    {command}" for command in results.get("commands", [])],
        "",
        "| run | rows | stage | wall s | CPU s | peak RSS MB | LightGBM fit s | oversample s | load |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
        rows = f"{run.get('rows', 0):,}"
        for s in run["stages"]:
            failed = " (failed)" if s["exit_code"] else ""
            lines.append(
                f"| {run['label']} | {rows} | {s['stage']}{failed} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | "
                f"{s['peak_rss_mb']:,.0f} | {_cell(s.get('lightgbm_fit_s'), '.1f')} | "
                f"{_cell(s.get('oversample_s') or None, '.1f')} | {_cell(s.get('load_average'), '.1f')} |"
            )
        if run.get("completed"):
            lines.append(f"| {run['label']} | {rows} | dvc commit (hashing outputs) | {run['dvc_commit_s']:.1f} "
                         "| | | | | |")
            lines.append(f"| {run['label']} | {rows} | **total** | **{run['total_wall_s']:.1f}** | | "
                         f"**{run['peak_rss_mb']:,.0f}** | | | |")
            lines.append(f"| {run['label']} | {rows} | `dvc repro`, nothing changed | {run['noop_repro_s']:.2f} "
                         "| | | | | |")
        scoring = run.get("scoring")
        if scoring and "wall_s" in scoring:
            failed = " (failed, see the log)" if scoring["exit_code"] else ""
            lines.append(f"| {run['label']} | {scoring['rows']:,} | score (`stages.predict`, CSV in){failed} | "
                         f"{scoring['wall_s']:.1f} | {scoring['cpu_s']:.1f} | {scoring['peak_rss_mb']:,.0f} | | | "
                         f"{_cell(scoring.get('load_average'), '.1f')} |")
    lines += [
        "",
        "LightGBM fit s is summed over every fit in the stage (cross-validation workers too), so it can exceed "
        "the wall time when fits run side by side. Peak RSS is the stage's processes added up. Load is the "
        "machine's 1-minute load average when the stage ended (2 cores: above 2, other work competed for them).",
        "",
        "| target | limit | measured | met | margin |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "not run"}[t["met"]]
        lines.append(f"| {t['target']} | {t['limit']} | {t['measured']} | {met} | {t['margin']} |")
    return "\n".join(lines) + "\n"


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {pair!r}: use KEY=VALUE, e.g. --set tune.n_jobs=2")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="generate.rows of each run (default: 10000 100000 1000000)")
    parser.add_argument("--tune-sample-rows", type=int, default=200_000,
                        help="tune.sample_rows (and calibration.sample_rows) for the sized runs; 0: all rows")
    parser.add_argument("--calibration-sample-rows", type=int, default=None,
                        help="calibration.sample_rows (default: as --tune-sample-rows)")
    parser.add_argument("--no-default", action="store_true",
                        help="skip the run of the committed params.yaml as it is")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra params for the sized runs, e.g. --set tune.n_jobs=2")
    parser.add_argument("--score-rows", type=int, default=1_000_000,
                        help="customers scored with stages.predict after the last run (0: skip)")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results"),
                        help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs already in OUTPUT.json, replacing those with the same label")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)

    sized = parse_overrides(args.set)
    if args.tune_sample_rows:
        sized["tune.sample_rows"] = args.tune_sample_rows
    calibration_rows = args.calibration_sample_rows or args.tune_sample_rows
    if calibration_rows:
        sized["calibration.sample_rows"] = calibration_rows
    plan = [] if args.no_default else [(DEFAULT_LABEL, {})]
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
    for i, (label, overrides) in enumerate(plan):
        last = i == len(plan) - 1
        run = benchmark_size(label, overrides, args.keep, args.score_rows if last else None, log_dir)
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
