"""Run a named benchmark config and store its result.

    python -m benchmarks.run --list                      # the configs, with what each measures
    python -m benchmarks.run CONFIG                      # run one
    python -m benchmarks.run CONFIG --with rows=[10000] --with params.tune.n_points=2
    python -m benchmarks.run compare A B                 # two commits' stored results, with ratios

benchmarks/configs.yaml names each config's kind (pipeline, scoring, variants, ceiling,
dask-preprocess, time-split) and options; `--with OPTION=VALUE` (a YAML value) changes one option for this run,
and `--with params.KEY=VALUE` one param of the runs' params.yaml. The result (benchmarks/results.py:
commit, dirty flag, package versions, machine, load, options and figures) is written to
benchmarks/results/<machine>/<commit>/<config>.json after every piece of work, so a stopped run
keeps what it measured, and its table is printed at the end. Logs go to benchmarks/logs/ (ignored
by git). Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.results import ROOT, new_result, path_of, save
from benchmarks.workdir import unknown_params

CONFIGS = ROOT / "benchmarks" / "configs.yaml"
LOGS = ROOT / "benchmarks" / "logs"
# Each kind: a module with run(options, figures, save, logs) -> bool and summary(result) -> str.
KINDS = {"pipeline": "benchmarks.pipeline", "scoring": "benchmarks.scoring", "variants": "benchmarks.variants",
         "ceiling": "benchmarks.ceiling", "dask-preprocess": "benchmarks.dask_preprocess",
         "time-split": "benchmarks.time_split"}


def configs() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(CONFIGS.read_text())


def with_changes(options: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """`options` with each OPTION=VALUE of `changes`; `params.a.b=V` sets the param `a.b` in options["params"]."""
    options = copy.deepcopy(options)
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --with {change!r}: use OPTION=VALUE, e.g. --with rows=[10000]")
        option, dot, param = key.partition(".")
        if option == "params" and dot:
            options.setdefault("params", {})
            options["params"][param] = yaml.safe_load(value)
        elif dot:
            raise SystemExit(f"error: --with {change!r}: only params take a dotted key (params.tune.n_points=2)")
        else:
            options[option] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        from benchmarks.compare import main as compare_main
        return compare_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="a name in benchmarks/configs.yaml")
    parser.add_argument("--with", dest="changes", action="append", default=[], metavar="OPTION=VALUE",
                        help="change an option of the config for this run (YAML value)")
    parser.add_argument("--list", action="store_true", help="list the configs and exit")
    args = parser.parse_args(argv)
    named = configs()
    if args.list or not args.config:
        width = max(map(len, named))
        for name, config in named.items():
            print(f"{name:<{width}}  {config['kind']:<15}  {config['about']}")
        return 0
    if args.config not in named:
        print(f"error: no benchmark config {args.config!r}; choose one of: {', '.join(named)}", file=sys.stderr)
        return 2
    config = named[args.config]
    kind = importlib.import_module(KINDS[config["kind"]])
    options = with_changes(config.get("options") or {}, args.changes)
    unknown = unknown_params(ROOT / "params.yaml", options.get("params") or {})
    if unknown:
        print(f"error: {args.config}: {', '.join(unknown)} not in params.yaml; fix the key "
              "(docs/parameters.md lists them)", file=sys.stderr)
        return 2
    result = new_result(args.config, config["kind"], options)
    LOGS.mkdir(exist_ok=True)
    print(f"[{args.config}] writing {path_of(result).relative_to(ROOT)}", file=sys.stderr)
    ok = kind.run(options, result["figures"], lambda: save(result), LOGS)
    written = save(result, complete=ok)
    print(kind.summary(result))
    print(f"[{args.config}] wrote {Path(written).relative_to(ROOT)}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
