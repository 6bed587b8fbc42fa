"""The pull-request report as Markdown: headline metrics, every other change, params, plot_data.

Reads what `stages.lib.report.revisions` fetches from git and DVC and draws with
`stages.lib.evaluation.images`; `stages.report` is the command around it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from stages.lib.core.errors import PipelineError
from stages.lib.core.files import atomic_path
from stages.lib.evaluation import images, plot_data
from stages.lib.report.revisions import (
    WORKSPACE,
    Revision,
    describe_revisions,
    dvc_diff,
    revision_file,
    revision_json,
    run_dvc,
)

# The decision a reviewer weighs first: how many flagged customers buy, how
# many buyers are found, and at what threshold.
METRICS_FILE = "metrics/metrics.json"
HEADLINE = ("precision", "recall", "f1", "average_precision", "threshold")
# Other metric files, in pipeline order after the test-split metrics.
METRIC_FILES = (METRICS_FILE, "metrics/calibrate.json", "metrics/tune.json", "metrics/resample.json")

# Where evaluate writes its plots (dvc.yaml: `paths.test_plots`).
TEST_PLOTS = "metrics/plots/evaluate"
# Curves drawn with both revisions on one chart: (title, file, x, y, x label, y label).
CURVES = (
    ("Precision-recall (test split)", f"{TEST_PLOTS}/{plot_data.PRECISION_RECALL}", "recall", "precision",
     "recall", "precision"),
    ("ROC (test split)", f"{TEST_PLOTS}/{plot_data.ROC}", "fpr", "tpr", "false positive rate", "true positive rate"),
    ("Cumulative gains (test split)", f"{TEST_PLOTS}/{plot_data.GAINS}", "contacted", "captured",
     "share of customers contacted, best first", "share of buyers reached"),
    ("Calibration (test split)", f"{TEST_PLOTS}/{plot_data.CALIBRATION}", "predicted", "observed",
     "mean predicted probability", "observed share of buyers"),
)
IMAGES = (("Threshold choice (out of fold)", "metrics/plots/threshold.png"),
          ("Feature importance", f"{TEST_PLOTS}/{plot_data.FEATURE_IMPORTANCE_IMAGE}"))

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


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def format_change(entry: dict) -> str:
    old, new = entry.get("old"), entry.get("new")
    if old is None and new is not None:
        return "new"
    if new is None and old is not None:
        return "removed"
    delta = entry.get("diff")
    if isinstance(delta, (int, float)) and not isinstance(delta, bool):
        if delta == 0:
            return "0"
        text = f"{delta:+,}" if isinstance(delta, int) else f"{delta:+.4f}"
        return text.replace("-", "−")
    return "changed" if old != new else "—"


def _changed(entry: dict) -> bool:
    return entry.get("old") != entry.get("new")


def headline_sentence(diff: dict, base: Revision) -> str:
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
    return f"Against **{base.label}**: " + ", ".join(parts) + at + "."


def metrics_section(diff: dict, order: list[tuple[str, str]], base: Revision, workspace: Revision) -> list[str]:
    header = [f"| Metric | {base.label} | {workspace.label} | Change |", "|---|---:|---:|---:|"]
    lines = ["## Test-split metrics", "", *header]
    for file, name in order:
        if file == METRICS_FILE and name in HEADLINE:
            entry = diff[file][name]
            lines.append(f"| **{name}** | {format_value(entry.get('old'))} | {format_value(entry.get('new'))} "
                         f"| **{format_change(entry)}** |")
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


def _operating_point(metrics: Any, x: str) -> tuple[float, float] | None:
    """Where the chosen threshold sits on the precision-recall or ROC curve."""
    if not isinstance(metrics, dict) or not all(k in metrics for k in ("precision", "recall", "fp", "tn")):
        return None
    if x == "recall":
        return metrics["recall"], metrics["precision"]
    negatives = metrics["fp"] + metrics["tn"]
    return (metrics["fp"] / negatives if negatives else 0.0), metrics["recall"]


def curve_panels(root: Path, base: str) -> list[dict]:
    """The data of `images.curves_figure`: each curve of the workspace and the base, and each decision."""
    revisions = ((WORKSPACE, None), (base, base))
    test_metrics = {label: revision_json(root, revision, METRICS_FILE) for label, revision in revisions}
    panels = []
    for title, path, x, y, x_label, y_label in CURVES:
        series, points = {}, {}
        for label, revision in revisions:
            records = revision_json(root, revision, path) or []
            series[label] = [(r[x], r[y]) for r in records
                             if isinstance(r, dict) and r.get(x) is not None and r.get(y) is not None]
            points[label] = _operating_point(test_metrics[label], x) if x in ("recall", "fpr") else None
        panels.append({"title": title, "x": x, "y": y, "x_label": x_label, "y_label": y_label,
                       "series": series, "points": points})
    return panels


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def plots_section(root: Path, base: Revision, plots_dir: Path, report_dir: Path) -> list[str]:
    lines = ["## Plots", ""]
    figure = images.curves_figure(curve_panels(root, base.label),
                                   [(WORKSPACE, "-", "#3b75af"), (base.label, "--", "#ef8636")])
    if figure is not None:
        curves = plots_dir / "report" / "curves.png"
        images.save_figure(figure, curves)
        lines += [f"Solid: {WORKSPACE}; dashed: {base.label}; dots: the decision at each revision's threshold.", "",
                  f"![Precision-recall, ROC, gains and calibration curves of both revisions]"
                  f"({_relative(curves, report_dir)})", ""]
    rows = []
    for title, path in IMAGES:
        cells = []
        for label, content in ((base.label, revision_file(root, base.label, path)),
                               (WORKSPACE, revision_file(root, None, path))):
            if content is None:
                cells.append("not found")
                continue
            image = plots_dir / "report" / f"{'base' if label != WORKSPACE else WORKSPACE}_{Path(path).name}"
            with atomic_path(image) as tmp:
                tmp.write_bytes(content)
            # Markdown, not <img>: `cml comment create` uploads the local images Markdown links.
            cells.append(f"![{title}, {label}]({_relative(image, report_dir)})")
        rows.append(f"| {title} | {' | '.join(cells)} |")
    lines += [f"| | {base.label} | {WORKSPACE} |", "|---|---|---|", *rows, ""]
    try:
        run_dvc(["plots", "diff", base.label, "--out", str(plots_dir)], root, "dvc plots diff")
        lines.append(f"Every plot of both revisions, interactive: [`dvc plots diff {base.label}`]"
                     f"({_relative(plots_dir / 'index.html', report_dir)}) (open it in a browser; in CI, "
                     "download the workflow's `plots` artifact).")
    except PipelineError as error:
        lines.append(f"The interactive plots could not be rendered: {error.problems[0]}")
    return lines + [""]


TUNE_FILE = "metrics/tune.json"
FAMILY_NAMES = {"lightgbm": "LightGBM", "logistic_regression": "logistic regression"}


def model_section(tune: Any, base_tune: Any, base: Revision) -> list[str]:
    """Which model family ships, whether that changed, and the fresh-fold comparison that chose it."""
    if not isinstance(tune, dict) or tune.get("family") not in FAMILY_NAMES:
        return []
    family = FAMILY_NAMES[tune["family"]]
    before = base_tune.get("family") if isinstance(base_tune, dict) else None
    lines = ["## Model", ""]
    if before is not None and before != tune["family"]:
        lines.append(f"**The model family changed: {FAMILY_NAMES.get(before, before)} ({base.label}) → {family}.**")
    else:
        lines.append(f"Ships **{family}**" + (f", as {base.label} did." if before else "."))
    comparison = tune.get("comparison")
    if isinstance(comparison, dict):
        lines += ["", f"Chosen on {comparison['folds']}x{comparison['repeats']} fresh folds of the training split "
                  f"({tune.get('scoring')}): LightGBM {format_value(comparison['lightgbm'])}, logistic regression "
                  f"{format_value(comparison['logistic_regression'])}, difference "
                  f"{comparison['difference']:+.4f} (standard error {format_value(comparison['standard_error'])}); "
                  "LightGBM ships only when it wins by more than one standard error."]
    else:
        lines += ["", "Set by `model.family`; no comparison was run."]
    return lines + [""]


BASELINE_NAMES = {"logistic_regression": "logistic regression", "default_lightgbm": "LightGBM, default settings"}
BASELINE_METRICS = (("average_precision", "average precision"), ("roc_auc", "ROC AUC"),
                    ("precision_at_k", "precision at the contact budget"),
                    ("capture_rate_at_top", "buyers reached at the contact budget"),
                    ("average_precision_difference_se", "standard error of the average precision difference"))


def baselines_section(metrics: Any) -> list[str]:
    """The model beside the models a user would pick instead, on the same split; says plainly when one wins."""
    baselines = metrics.get("baselines") if isinstance(metrics, dict) else None
    if not baselines:
        return []
    names = [n for n in BASELINE_NAMES if n in baselines]
    lines = ["## Beside the alternatives", "",
             "The same training split and test rows; the contact budget is the top "
             f"{format_value(metrics.get('top_fraction'))} of the list.", "",
             "| | this model | " + " | ".join(BASELINE_NAMES[n] for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for key, label in BASELINE_METRICS:
        lines.append(f"| {label} | {format_value(metrics.get(key))} | "
                     + " | ".join(format_value(baselines[n].get(key)) for n in names) + " |")
    ours = metrics.get("average_precision") or 0.0
    winners = [n for n in names if baselines[n].get("average_precision", 0.0) > ours]
    lines.append("")
    if winners:
        lines.append("**" + " and ".join(f"{BASELINE_NAMES[n]} ({format_value(baselines[n]['average_precision'])})"
                                         for n in winners)
                     + f" rank{'s' if len(winners) == 1 else ''} customers better than this model "
                     f"({format_value(ours)} average precision) on this data.** Consider it before shipping.")
    else:
        lines.append(f"This model ranks customers better than every alternative here "
                     f"({format_value(ours)} average precision).")
    return lines + [""]


def build_report(root: Path, base: str, plots_dir: Path, report_dir: Path) -> str:
    base_revision, workspace = describe_revisions(root, base)
    warnings: list[str] = []
    metrics = dvc_diff(["metrics", "diff", base, "--all"], root, warnings)
    params = dvc_diff(["params", "diff", base], root, warnings)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    order = metric_order(root, metrics)
    lines = [
        "# Model report",
        "",
        f"Comparing **{base_revision.label}** ({base_revision.detail}) with the **{workspace.label}** "
        f"({workspace.detail}).",
        "",
        *[f"> **Warning:** DVC: {warning}\n" for warning in warnings],
        headline_sentence(metrics, base_revision),
        "",
        *metrics_section(metrics, order, base_revision, workspace),
        *model_section(revision_json(root, None, TUNE_FILE), revision_json(root, base, TUNE_FILE), base_revision),
        *baselines_section(revision_json(root, None, METRICS_FILE)),
        *params_section(params, base_revision, workspace),
        *plots_section(root, base_revision, plots_dir, report_dir),
    ]
    return "\n".join(lines).rstrip() + "\n"
