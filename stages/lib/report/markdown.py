"""The pull-request report as Markdown: headline metrics, every other change, the model, params, plots.

Reads what `stages.lib.report.revisions` fetches from git and DVC; the model
sections are in sections.py, the plots in plots.py; `stages.report` is the
command around it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stages.lib.evaluation.comparison import combined_standard_error, compare
from stages.lib.report.data_change import data_changes
from stages.lib.report.formatting import METRICS_FILE, format_change, format_value
from stages.lib.report.plots import plots_section
from stages.lib.report.revisions import Revision, describe_revisions, dvc_diff, revision_json
from stages.lib.report.sections import TUNE_FILE, baselines_section, model_section, periods_section

# The decision a reviewer weighs first: how many flagged customers buy, how
# many buyers are found, and at what threshold.
HEADLINE = ("precision", "recall", "f1", "average_precision", "threshold")
# Other metric files, in pipeline order after the test-split metrics.
METRIC_FILES = (METRICS_FILE, "metrics/calibrate.json", "metrics/tune.json", "metrics/resample.json")

def _flatten(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys of a JSON object in file order, as `dvc metrics diff` names them."""
    if not isinstance(data, dict):
        return [prefix]
    keys = []
    for key, value in data.items():
        keys.extend(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return keys


def metric_order(root: Path, diff: dict) -> list[tuple[str, str]]:
    """(file, metric) pairs: headline metrics first, then each file's metrics in file order."""
    pairs = [(METRICS_FILE, name) for name in HEADLINE if name in diff.get(METRICS_FILE, {})]
    files = [f for f in METRIC_FILES if f in diff] + sorted(f for f in diff if f not in METRIC_FILES)
    for file in files:
        try:
            in_file = _flatten(json.loads((root / file).read_text()))
        except (OSError, ValueError):
            in_file = []
        names = [n for n in in_file if n in diff[file]] + sorted(n for n in diff[file] if n not in in_file)
        pairs.extend((file, n) for n in names if (file, n) not in pairs)
    return pairs


def _changed(entry: dict) -> bool:
    return entry.get("old") != entry.get("new")


def headline_sentence(diff: dict, base: Revision) -> str:
    """Precision and recall with their changes, and the average precision's change with its noise: better or
    worse only when the 95 % interval of the two runs' bootstrap errors combined leaves out zero."""
    metrics = diff.get(METRICS_FILE, {})
    parts = []
    for name in ("precision", "recall"):
        entry = metrics.get(name)
        if entry:
            parts.append(f"{name} {format_value(entry.get('old'))} → {format_value(entry.get('new'))} "
                         f"({format_change(entry)})")
    if not parts:
        return f"No test-split metrics found in {METRICS_FILE}; run `dvc repro` first."
    threshold = metrics.get("threshold")
    at = (f" at threshold {format_value(threshold.get('old'))} → {format_value(threshold.get('new'))}"
          if threshold else "")
    sentence = f"Against **{base.label}**: " + ", ".join(parts) + at + "."
    ranking, noise = metrics.get("average_precision") or {}, metrics.get("average_precision_se") or {}
    if isinstance(ranking.get("old"), (int, float)) and isinstance(ranking.get("new"), (int, float)):
        measured = compare(ranking["new"], ranking["old"], combined_standard_error(noise.get("new"), noise.get("old")))
        sentence += (f" Average precision {format_value(ranking['old'])} → {format_value(ranking['new'])}: "
                     f"{measured.of('this run')} ({measured.evidence()}).")
    return sentence


def side_by_side_sentence(diff: dict, changes: list[str], base: Revision, workspace: Revision) -> str:
    """The first thing the report says when the two runs did not use the same data."""
    metrics = diff.get(METRICS_FILE, {})

    def run(side: str) -> str:
        return ", ".join(f"{name.replace('_', ' ')} {format_value(metrics[name].get(side))}"
                         for name in ("precision", "recall", "average_precision") if name in metrics)

    return (f"**The data changed since {base.label}: {'; '.join(changes)}.** The two runs are side by side, not "
            f"compared: a difference between them is not what a change to the model did. "
            f"{base.label}: {run('old') or 'no metrics'}; {workspace.label}: {run('new') or 'no metrics'}.")


def metrics_section(diff: dict, order: list[tuple[str, str]], base: Revision, workspace: Revision,
                    side_by_side: bool = False) -> list[str]:
    """The headline metrics, then every other metric that changed; `side_by_side` (the data changed): the
    headline metrics without a change column."""
    header = ([f"| Metric | {base.label} | {workspace.label} |", "|---|---:|---:|"] if side_by_side else
              [f"| Metric | {base.label} | {workspace.label} | Change |", "|---|---:|---:|---:|"])
    lines = ["## Test-split metrics", "", *header]
    for file, name in order:
        if file == METRICS_FILE and name in HEADLINE:
            entry = diff[file][name]
            change = "" if side_by_side else f" **{format_change(entry)}** |"
            lines.append(f"| **{name}** | {format_value(entry.get('old'))} | {format_value(entry.get('new'))} |"
                         + change)
    others = [(f, n) for f, n in order if not (f == METRICS_FILE and n in HEADLINE)]
    changed = [(f, n) for f, n in others if _changed(diff[f][n])]
    unchanged = len(others) - len(changed)
    lines += ["", f"<details><summary>Other metrics: {len(changed)} changed, {unchanged} unchanged "
              "(not listed)</summary>", ""]
    if changed:
        lines += [f"| File | Metric | {base.label} | {workspace.label} | Change |", "|---|---|---:|---:|---:|"]
        for file, name in changed:
            entry = diff[file][name]
            lines.append(f"| {file} | {name} | {format_value(entry.get('old'))} | "
                         f"{format_value(entry.get('new'))} | {format_change(entry)} |")
    else:
        lines.append("No other metric changed.")
    lines += ["", "</details>", ""]
    return lines


def params_section(diff: dict, base: Revision, workspace: Revision) -> list[str]:
    rows = [(file, name, entry) for file, params in sorted(diff.items()) for name, entry in sorted(params.items())]
    lines = ["## Parameters", ""]
    if not rows:
        return lines + [f"No parameter differs from {base.label}.", ""]
    lines += [f"| Parameter | {base.label} | {workspace.label} |", "|---|---:|---:|"]
    for file, name, entry in rows:
        shown = name if file == "params.yaml" else f"{file}: {name}"
        lines.append(f"| {shown} | {format_value(entry.get('old'))} | {format_value(entry.get('new'))} |")
    return lines + [""]


def build_report(root: Path, base: str, plots_dir: Path, report_dir: Path) -> str:
    base_revision, workspace = describe_revisions(root, base)
    warnings: list[str] = []
    metrics = dvc_diff(["metrics", "diff", base, "--all"], root, warnings)
    params = dvc_diff(["params", "diff", base], root, warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    order = metric_order(root, metrics)
    changes = data_changes(root, base, params)
    lines = [
        "# Model report",
        "",
        f"Comparing **{base_revision.label}** ({base_revision.detail}) with the **{workspace.label}** "
        f"({workspace.detail}).",
        "",
        *[f"> **Warning:** DVC: {warning}\n" for warning in warnings],
        side_by_side_sentence(metrics, changes, base_revision, workspace) if changes
        else headline_sentence(metrics, base_revision),
        "",
        *metrics_section(metrics, order, base_revision, workspace, side_by_side=bool(changes)),
        *model_section(revision_json(root, None, TUNE_FILE), revision_json(root, base, TUNE_FILE), base_revision),
        *baselines_section(revision_json(root, None, METRICS_FILE)),
        *periods_section(revision_json(root, None, METRICS_FILE)),
        *params_section(params, base_revision, workspace),
        *plots_section(root, base_revision, plots_dir, report_dir),
    ]
    return "\n".join(lines).rstrip() + "\n"
