"""Write the generated parts of the README and docs/ from their one source each.

    python -m docs.build            # rewrite them
    python -m docs.build --check    # exit 1, naming each, when one is out of date

- docs/parameters.md: from the params models' field descriptions, types, ranges and
  defaults (stages/lib/core/params_sections.py, params_model.py) and the values in the committed params.yaml;
- params.yaml's comments (the allowed values after each key), keeping its values;
- README.md's headline metrics table: from metrics/metrics.json;
- docs/performance.md's tables, docs/metrics.md's quality, ceiling and time-split tables and
  benchmarks/README.md's ceiling table per seed: from the benchmark result files in benchmarks/results/.

.ci/run calls `--check` on the commit it tests; tests/test_docs.py checks that a changed source makes
its part stale.

A generated part sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`;
everything outside those markers is written by hand and left alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from ruamel.yaml import YAML

from benchmarks import time_split
from benchmarks.markdown import measured_on
from benchmarks.scoring import variants_table
from stages.lib.core.params import Params
from stages.lib.core.params_features import EventTableParams, SnapshotRange
from stages.lib.core.params_model import Dimension

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m docs.build"


def _begin(name: str) -> str:
    return f"<!-- generated: {name} (by `{COMMAND}` from its source; do not edit) -->"


def _end(name: str) -> str:
    return f"<!-- end generated: {name} -->"


def _allowed(annotation: Any, metadata: list) -> str:
    """What a field accepts, in words: choices, a type and its range (`metadata`: the field's bounds)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        extra = []
        for item in args[1:]:
            extra += list(getattr(item, "metadata", [item]))  # a Field(...) inside Annotated holds its bounds
        return _allowed(args[0], list(metadata) + extra)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is Union:
        options = [_allowed(a, metadata) for a in args if a is not type(None)]
        return " or ".join(options) + (" or empty" if type(None) in args else "")
    if origin is list:
        if args[0] is int:
            return "a list of integers"
        dates = any(getattr(getattr(m, "func", None), "__name__", "") == "_iso_date"
                    for m in getattr(args[0], "__metadata__", ()))
        return "a list of ISO dates" if dates else "a list of names" if typing.get_origin(args[0]) is Annotated \
            else "a list"
    if origin is dict:
        named = {"Dimension": "dimension", "EventTableParams": "event table"}.get(args[1].__name__, "value")
        return f"a mapping of name to {named}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    if annotation is str:
        return "text"
    name = {int: "integer", float: "number", bool: "true/false"}.get(annotation, str(annotation))
    return _with_bounds(name, metadata)


def _with_bounds(text: str, metadata: list) -> str:
    bounds = []
    for item in metadata:
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attribute, None)
            if value is not None:
                bounds.append(f"{sign} {value:,}" if isinstance(value, int) and value > 9999 else f"{sign} {value}")
    return f"{text} {' and '.join(bounds)}" if bounds else text


def _value(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, BaseModel):
        return _value(value.model_dump())
    if isinstance(value, dict) and value and all(not isinstance(v, (dict, list, BaseModel)) for v in value.values()):
        return "`" + _flow(value) + "`"
    if isinstance(value, dict):
        return "see below" if value else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]" if value else "[]"
    return f"`{_scalar(value)}`" if isinstance(value, bool) else f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, committed: dict) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        default = "required" if field.default is PydanticUndefined else _value(field.default)
        value = committed.get(name, "(not set)") if isinstance(committed, dict) else "(not set)"
        shown = value if value == "(not set)" else _value(value)
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {shown} | {default} | {_allowed(field.annotation, field.metadata)} | "
                    f"{meaning} |")
    return rows


Reader = Callable[[str], str]  # a path relative to the repository root -> that file's text


def working_tree(path: str) -> str:
    return (ROOT / path).read_text()


def parameters_page(read: Reader = working_tree) -> str:
    committed = YAML(typ="safe").load(read("params.yaml"))
    lines = [
        "# Parameters",
        "",
        _begin("parameters"),
        "",
        "Every key of `params.yaml`, checked before any work: an unknown key, a wrong type or a value out of range",
        "stops the stage with every problem listed at once (e.g. `error: params.yaml: tune.n_iters: unknown key;",
        "did you mean 'n_iter'?`). \"committed\" is the value in this repository's `params.yaml`; \"default\" the",
        "value used when the key is left out. Each stage reads only its own sections (`dvc.yaml`), so `dvc repro`",
        "reruns exactly the stages whose params changed.",
    ]
    for section, field in Params.model_fields.items():
        model = field.annotation
        lines += ["", f"## `{section}`", "", " ".join((model.__doc__ or "").split()), "",
                  "| key | committed | default | allowed | meaning |", "|---|---|---|---|---|"]
        lines += _rows(model, f"{section}.", committed.get(section) or {})
    for title, model in (("An event table (`features.tables.<name>`)", EventTableParams),
                         ("A snapshot range (`features.snapshots`)", SnapshotRange),
                         ("A search-space dimension (`tune.search_space.<name>`)", Dimension)):
        lines += ["", f"## {title}", "", " ".join((model.__doc__ or "").split()), "",
                  "| key | committed | default | allowed | meaning |", "|---|---|---|---|---|"]
        lines += _rows(model, "", {})
    tables = committed.get("features", {}).get("tables", {})
    lines += ["", "The committed event tables:", "", "| table | timestamp | sums | means |", "|---|---|---|---|"]
    lines += [f"| `{name}` | `{table['timestamp']}` | {', '.join(table.get('sums') or []) or '-'} | "
              f"{', '.join(table.get('means') or []) or '-'} |" for name, table in tables.items()]
    space = committed["tune"]["search_space"]
    lines += ["", "The committed search space:", "", "| parameter | dimension |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(f'{k}: {_scalar(v)}' for k, v in dimension.items())} |"
              for name, dimension in space.items()]
    lines += ["", _end("parameters"), ""]
    return "\n".join(lines)


PARAMS_HEADER = """\
# Every stage reads its own sections of this file; dvc.yaml lists which, so `dvc repro`
# reruns exactly the stages whose params changed. What each key means, its default and
# why: docs/parameters.md. The comment after each key (its allowed values) is written by
# `python -m docs.build` from stages/lib/core/params_*.py, which check them.
#
# Laid out so `dvc exp run -S key=value` rewrites only that value's line: lists in block
# style with "- item" at the key's indent, null written as an empty value.
"""
COMMENT_COLUMN = 32


def _scalar(value: Any) -> str:
    """A value as YAML reads it back: plain where YAML reads the text as the value, else quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, float) else str(value)
    return text if YAML(typ="safe").load(f"k: {text}")["k"] == value else json.dumps(value)


def _commented(line: str, comment: str) -> str:
    return f"{line.ljust(COMMENT_COLUMN - 2)}  # {comment}" if comment else line


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in mapping.items()) + "}"


def _block(mapping: dict, indent: str) -> list[str]:
    """A nested mapping's lines: a mapping of scalars on its key's line (a search dimension), lists in block
    style at the key's indent, deeper mappings indented."""
    lines = []
    for name, value in mapping.items():
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            lines.append(f"{indent}{name}: {_flow(value)}")
        elif isinstance(value, dict):
            lines += [f"{indent}{name}:", *_block(value, indent + "  ")]
        elif isinstance(value, list) and value:
            lines += [f"{indent}{name}:", *(f"{indent}- {_scalar(item)}" for item in value)]
        else:
            lines.append(f"{indent}{name}: {'[]' if value == [] else _scalar(value)}".rstrip())
    return lines


def params_file(text: str) -> str:
    """params.yaml with its values as they are and the allowed values after each key."""
    values = YAML(typ="safe").load(text)
    lines = [PARAMS_HEADER.rstrip("\n")]
    for section, field in Params.model_fields.items():
        if section not in values:
            continue
        lines.append("")
        lines.append(f"{section}:")
        model = field.annotation
        for key, value in (values[section] or {}).items():
            known = model.model_fields.get(key)
            allowed = _allowed(known.annotation, known.metadata).replace("\\|", "|").replace("`", "") if known else ""
            if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
                lines.append(_commented(f"  {key}: {_flow(value)}", allowed))
            elif isinstance(value, dict):
                lines.append(_commented(f"  {key}:", allowed))
                lines += _block(value, "    ")
            elif isinstance(value, list) and value:
                lines.append(_commented(f"  {key}:", allowed))
                lines += [f"  - {_scalar(item)}" for item in value]
            else:
                shown = "[]" if value == [] else _scalar(value)
                lines.append(_commented(f"  {key}: {shown}".rstrip(), allowed))
    written = "\n".join(lines) + "\n"
    if YAML(typ="safe").load(written) != values:
        raise SystemExit("docs.build: params.yaml would not read back as the same values; not written")
    return written


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def headline_metrics(read: Reader = working_tree) -> str:
    m = json.loads(read("metrics/metrics.json"))
    ideal, baselines = m.get("ideal"), m["baselines"]
    lr, lgbm = baselines["logistic_regression"], baselines["default_lightgbm"]
    header = ["", "model"] + (["best possible (true probabilities)"] if ideal else []) + [
        "logistic regression", "default LightGBM", "always \"no\""]

    def row(name: str, model: str, best: str = "", logistic: str = "", default: str = "", no: str = "") -> str:
        cells = [name, model] + ([best] if ideal else []) + [logistic, default, no]
        return "| " + " | ".join(cells) + " |"

    buyers, rows = m["actual_buyers"], m["test_rows"]
    periods = list(m.get("periods") or [])
    when = (f"the latest {len(periods)} monthly snapshots ({periods[0]} to {periods[-1]}: out of time, the model "
            "learned from earlier ones only)" if len(periods) > 1 else
            f"the latest snapshot ({periods[0]}: out of time)" if periods else "customers held out at random")
    lines = [
        _begin("headline metrics"),
        "",
        f"Test split of the committed run: {when}, {rows:,} rows, {buyers:,} of them buyers "
        f"({buyers / rows:.1%}), never seen by any fit, search or threshold choice (`metrics/metrics.json`).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        row("average precision", _number(m["average_precision"]), ideal and _number(ideal["average_precision"]),
            _number(lr["average_precision"]), _number(lgbm["average_precision"]), _number(buyers / rows)),
        row("ROC AUC", _number(m["roc_auc"]), ideal and _number(ideal["roc_auc"]), _number(lr["roc_auc"]),
            _number(lgbm["roc_auc"]), "0.5"),
        row(f"precision / recall / F1 at the chosen threshold ({m['threshold']:.3f})",
            f"{m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f}", no="0 / 0 / 0"),
        row("precision / recall / F1 at 0.5",
            f"{m['precision_at_0_5']:.3f} / {m['recall_at_0_5']:.3f} / {m['f1_at_0_5']:.3f}"),
        row(f"top {m['top_fraction']:.0%} of the list: precision, buyers reached",
            f"{m['precision_at_k']:.3f}, {m['capture_rate_at_top']:.0%}", "",
            f"{lr['precision_at_k']:.3f}, {lr['capture_rate_at_top']:.0%}",
            f"{lgbm['precision_at_k']:.3f}, {lgbm['capture_rate_at_top']:.0%}"),
        row("Brier score (lower is better)", f"{m['brier']:.4f}", ideal and f"{ideal['brier']:.4f}",
            no=f"{buyers / rows:.4f}"),
        row("accuracy", _number(m["accuracy"]), no=_number(m["baseline"]["accuracy"])),
        row("expected vs actual buyers", f"{m['expected_buyers']:.1f} vs {buyers:,}"),
    ]
    if ideal:
        lines += ["", f"The model reaches {ideal['average_precision_ratio']:.0%} of the best possible average "
                  f"precision and {ideal['roc_auc_ratio']:.0%} of its ROC AUC (the true probabilities know intent "
                  "the table never exports)."]
    for name, numbers in (("logistic regression", lr), ("default LightGBM", lgbm)):
        difference = m["average_precision"] - numbers["average_precision"]
        lines.append(f"Average precision minus the {name}'s: {difference:+.3f} (paired bootstrap standard error "
                     f"{numbers['average_precision_difference_se']:.3f}).")
    lines += ["", _end("headline metrics")]
    return "\n".join(lines)


# The stored benchmark results the generated tables show (benchmarks/results.py: one format, stored per
# machine and commit): for each config, the latest clean result by commit order. Timings compare only
# within one machine kind; ranking scores are the same bits on every x86-64 CPU (the project's rule; the
# 11 ceiling splits' pipeline scores agree in every digit on AMD EPYC and Intel Xeon), so those come from any machine.
RESULTS = "benchmarks/results"
TIMINGS_ON = "amd-epyc-2-cores"


@functools.cache
def _commit_order() -> dict[str, int]:
    """Each commit of the history (12-digit prefix) and its age: 0 for HEAD, growing into the past."""
    listed = subprocess.run(["git", "rev-list", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return {commit[:12]: age for age, commit in enumerate(listed)}


def latest(config: str, read: Reader = working_tree, *, timed: bool = True) -> tuple[str, dict[str, Any]]:
    """The path (relative to the root) and the contents of `config`'s latest clean, complete result that `read`
    can read: of
    TIMINGS_ON's results where `timed`, else of every machine's. A result the reader lacks (one not
    committed yet, read from the last commit) or of a stopped run is passed over for the one before it."""
    order = _commit_order()
    machines = [TIMINGS_ON] if timed else sorted(folder.name for folder in (ROOT / RESULTS).iterdir()
                                                 if folder.is_dir())
    stored = [(order.get(folder.name, len(order)), machine, folder.name)
              # A commit this history lacks (a workspace without the project's history) ranks after those it has.
              for machine in machines for folder in (ROOT / RESULTS / machine).iterdir()
              if (folder / f"{config}.json").is_file() and not folder.name.endswith("-dirty")]
    for _age, machine, commit in sorted(stored):
        path = f"{RESULTS}/{machine}/{commit}/{config}.json"
        try:
            result = json.loads(read(path))
        except (OSError, subprocess.CalledProcessError):
            continue
        if result.get("complete", True):
            return path, result
    where = f"{RESULTS}/{machines[0] if timed else '*'}"
    raise SystemExit(f"docs.build: no clean, complete result of '{config}' in {where}; run "
                     f"`python -m benchmarks.run {config}` on a committed tree")


CEILING_CONFIGS = ("ceiling-60k", "ceiling-60k-n-iter-40")
QUALITY_CONFIGS = {"quality": "generated", "linear-truth-60k": "generated, `generate.truth: linear`"}


def _measured_on(result: dict[str, Any], path: str) -> str:
    """Where a table's figures come from: its machine and code, and the file."""
    return f"{measured_on(result)}; `{path}`"


def performance_tables(read: Reader = working_tree) -> str:
    stage_table, result = latest("sizes", read)
    lines = [_begin("performance"), "",
             f"Stage table (`python -m benchmarks.run {result['config']}`; {_measured_on(result, stage_table)}; "
             "the 1-minute load average each stage ran under is in the last column):",
             "", "| run | rows | stage | wall s | CPU s | peak RSS MB | load |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for run in result["figures"]["runs"]:
        for stage in run["stages"]:
            lines.append(f"| {run['label']} | {run['rows']:,} | {stage['stage']} | {stage['wall_s']:.1f} | "
                         f"{stage['cpu_s']:.1f} | {stage['peak_rss_mb']:,.0f} | {stage['load_average']:.1f} |")
        if run.get("total_wall_s"):
            lines.append(f"| {run['label']} | {run['rows']:,} | **every stage, with dvc** | "
                         f"**{run['total_wall_s']:.1f}** | | **{run['peak_rss_mb']:,.0f}** | |")
    scoring_result, scoring = latest("scoring-1m", read)
    lines += ["", f"Scoring {scoring['figures']['rows']:,} customers with `stages.predict` (CSV in and out; "
              f"`python -m benchmarks.run {scoring['config']}`; {_measured_on(scoring, scoring_result)}):", "",
              variants_table(scoring["figures"]), "", _end("performance")]
    return "\n".join(lines)


TABLE_NAMES = {"default": "generated, committed params (default)", "own table": "own table (a user's export)",
               "three-column table": "three-column table"}


def quality_table(read: Reader = working_tree) -> str:
    """Each benchmarked table's shipped model beside the baselines, from the benchmark's result files."""
    lines = [_begin("quality"), "",
             "| table | rows | ships | pipeline AP | pipeline / ideal | logistic regression (se) | "
             "default LightGBM (se) | machine, load |", "|---|---:|---|---:|---:|---:|---:|---|"]
    sources = []
    for config, generated_label in QUALITY_CONFIGS.items():
        path, result = latest(config, read, timed=False)
        sources.append(f"`python -m benchmarks.run {result['config']}` ({_measured_on(result, path)})")
        cpu = f"{result['machine']['cpu']}, {result['machine']['cores']} cores"
        for run in result["figures"]["runs"]:
            quality = run.get("quality")
            if not quality:
                continue
            label = TABLE_NAMES.get(run["label"], generated_label)
            ratio = quality.get("average_precision_ratio")
            cells = [label, f"{run['rows']:,}", quality.get("family", "lightgbm").replace("_", " ").replace(
                "lightgbm", "LightGBM"), f"**{quality['average_precision']:.3f}**", f"{ratio:.2f}" if ratio else ""]
            for baseline in ("logistic_regression", "default_lightgbm"):
                numbers = quality["baselines"][baseline]
                cells.append(f"{numbers['average_precision']:.3f} ({numbers['average_precision_difference_se']:.3f})")
            loads = [stage["load_average"] for stage in run["stages"]]
            cells.append(f"{cpu}, {min(loads):.1f}-{max(loads):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "From " + "; ".join(sources) + ".", "", _end("quality")]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def ceiling_table(read: Reader = working_tree) -> str:
    """The pipeline, the ceiling model and the ideal scorer on the same test splits, one row per result."""
    lines = [_begin("ceiling"), "",
             "| result | seeds | ceiling trained on | ceiling of ideal | pipeline of ideal | pipeline of ceiling | "
             "`base.seed` 42: pipeline of ideal |", "|---|---:|---:|---:|---:|---:|---:|"]
    for path, result in [latest(config, read, timed=False) for config in CEILING_CONFIGS]:
        figures = result["figures"]
        largest = str(max(figures["ceiling_rows"]))
        runs = [r for r in figures["runs"] if r.get("completed") and largest in r.get("ceiling", {})]
        committed = next((r for r in runs if r["seed"] == 42), None)
        lines.append(" | ".join([
            f"| `{path.removeprefix(RESULTS + '/')}`", str(len(runs)), f"{int(largest):,}",
            _spread([r["ceiling"][largest] / r["ideal"] for r in runs]),
            _spread([r["pipeline"] / r["ideal"] for r in runs]),
            _spread([r["pipeline"] / r["ceiling"][largest] for r in runs]),
            f"{committed['pipeline'] / committed['ideal']:.3f} |" if committed else " |"]))
    lines += ["", "Mean (range) over the seeds; each row names the machine and commit measured and its file, "
              "which holds the options.", "", _end("ceiling")]
    return "\n".join(lines)


def ceiling_seeds(read: Reader = working_tree) -> str:
    """The latest ceiling-60k result, one row per seed, as its benchmark prints it."""
    from benchmarks.ceiling import summary  # LightGBM and scikit-learn only where this part is built

    path, result = latest(CEILING_CONFIGS[0], read, timed=False)
    return "\n".join([_begin("ceiling per seed"), "", f"From `{path}`:", "", summary(result),
                      _end("ceiling per seed")])


def search_edges(read: Reader = working_tree) -> str:
    """Where the committed search's best candidate lies: the same `edges` the tune stage warns from."""
    tune = json.loads(read("metrics/tune.json"))
    edges = (tune.get("lightgbm") or {}).get("edges")
    if edges is None:
        said = "The committed run did not search LightGBM (`model.family`), so no edge was checked."
    elif not edges:
        said = "The committed run's best candidate is on no edge of the search space."
    else:
        said = ("The committed run's best candidate is at " + ", ".join(
            f"the {end} end of `{name}`" for name, end in edges.items())
            + ": tune printed a `warning:` naming the range to widen.")
    return "\n".join([_begin("search edges"), "", said, "", _end("search edges")])


def time_split_table(read: Reader = working_tree) -> str:
    """The dated default split out of time beside a random split of the same rows, one row per seed."""
    path, result = latest("time-split-60k", read, timed=False)
    return "\n".join([_begin("time split"), "", f"From `python -m benchmarks.run {result['config']}` "
                      f"(`{path}`):", "", time_split.summary(result), _end("time split")])


def _replace(text: str, name: str, block: str) -> str:
    pattern = re.compile(re.escape(_begin(name)) + r".*?" + re.escape(_end(name)), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"docs.build: the markers of '{name}' are missing; put `{_begin(name)}` and "
                         f"`{_end(name)}` where it goes")
    return pattern.sub(lambda _: block, text, count=1)


def generated(read: Reader = working_tree) -> dict[str, Callable[[str], str]]:
    """Each file with generated parts (relative to the root), and how to bring its text up to date from
    the sources `read` gives."""
    return {
        "params.yaml": params_file,
        "docs/parameters.md": lambda _text: parameters_page(read),
        "README.md": lambda text: _replace(text, "headline metrics", headline_metrics(read)),
        "docs/performance.md": lambda text: _replace(text, "performance", performance_tables(read)),
        "docs/experiments.md": lambda text: _replace(text, "search edges", search_edges(read)),
        "benchmarks/README.md": lambda text: _replace(text, "ceiling per seed", ceiling_seeds(read)),
        "docs/metrics.md": lambda text: _replace(_replace(_replace(text, "quality", quality_table(read)), "ceiling",
                                                          ceiling_table(read)), "time split", time_split_table(read)),
    }


def committed(path: str) -> str:
    """A file's text at the last commit (git HEAD)."""
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def stale(read: Reader = working_tree) -> list[str]:
    """The files whose generated parts differ from what their sources give, all read with `read`: the
    working tree's, or with `committed` the last commit's (what main carries, whatever a user changed since)."""
    out_of_date = []
    for path, update in generated(read).items():
        try:
            text = read(path)
        except (OSError, subprocess.CalledProcessError):
            out_of_date.append(path)
            continue
        if update(text) != text:
            out_of_date.append(path)
    return out_of_date


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say which generated parts are out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path}: out of date; run `{COMMAND}`", file=sys.stderr)
        return 1 if out_of_date else 0
    for name, update in generated().items():
        path = ROOT / name
        text = update(path.read_text() if path.is_file() else "")
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"docs.build: wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
