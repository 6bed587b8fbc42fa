"""report: a Markdown report of how the workspace changes the model, against a base revision.

For a pull request: the test-split metrics (precision, recall, F1, average
precision and the threshold first), every parameter that changed, the curves of
both revisions drawn on one chart, the PNG plots side by side, and the
interactive `dvc plots diff` page. Metrics and plots are compared as committed
at the base and as they are in the workspace, so run `dvc repro` first.

    python -m stages.report --base main --output report.md
    python -m stages.report --base origin/main --output report.md --plots-dir dvc_plots
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from stages import plots
from stages.cli import run_stage, stage_parser
from stages.errors import PipelineError
from stages.tables import atomic_path

import matplotlib.pyplot as plt  # noqa: E402  (stages.plots chose the Agg backend)

# The decision a reviewer weighs first: how many flagged customers buy, how
# many buyers are found, and at what threshold.
METRICS_FILE = "metrics/metrics.json"
HEADLINE = ("precision", "recall", "f1", "average_precision", "threshold")
# Other metric files, in pipeline order after the test-split metrics.
METRIC_FILES = (METRICS_FILE, "metrics/calibrate.json", "metrics/tune.json", "metrics/resample.json")

# Curves drawn with both revisions on one chart: (title, file, x, y, x label, y label).
CURVES = (
    ("Precision-recall (test split)", "metrics/plots/precision_recall.json", "recall", "precision",
     "recall", "precision"),
    ("ROC (test split)", "metrics/plots/roc.json", "fpr", "tpr", "false positive rate", "true positive rate"),
    ("Cumulative gains (test split)", "metrics/plots/gains.json", "contacted", "captured",
     "share of customers contacted, best first", "share of buyers reached"),
    ("Calibration (test split)", "metrics/plots/calibration.json", "predicted", "observed",
     "mean predicted probability", "observed share of buyers"),
)
IMAGES = (("Threshold choice (out of fold)", "metrics/plots/threshold.png"),
          ("Feature importance", "metrics/plots/feature_importance.png"))

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Revision:
    label: str   # what the reader sees: "main", "workspace"
    detail: str  # the commit, and whether the work tree has uncommitted changes


def _run(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}")
        raise PipelineError(f"{what} failed: {message.splitlines()[-1]}")
    return result


def _dvc(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "dvc", *args], cwd, what)


def dvc_diff(args: list[str], root: Path, warnings: list[str]) -> dict:
    """A `dvc ... diff --json` result; DVC's warnings (e.g. a revision it could not read) are collected.

    DVC still exits 0 when it cannot read the base revision's metrics, and
    reports them as new: the reader must be told, or the report would mislead.
    """
    result = _dvc([*args, "--json"], root, f"dvc {' '.join(args[:2])}")
    warnings.extend(line.removeprefix("WARNING:").strip() for line in result.stderr.splitlines()
                    if line.startswith("WARNING:"))
    return json.loads(result.stdout or "{}")


def repository_root(start: Path) -> Path:
    result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"{start} is not inside a git repository; run the report from the project's clone")
    return Path(result.stdout.strip())


def describe_revisions(root: Path, base: str) -> tuple[Revision, Revision]:
    resolved = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
                              cwd=root, capture_output=True, text=True)
    if resolved.returncode != 0:
        raise PipelineError(
            f"base revision '{base}' not found; give a branch, tag or commit (in CI, check out with "
            f"fetch-depth: 0 or `git fetch origin {base.removeprefix('origin/')}`)"
        )
    head = _run(["git", "rev-parse", "--short", "HEAD"], root, "git rev-parse").stdout.strip()
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], root, "git status").stdout.strip()
    workspace_detail = f"`{head}`" + (" with uncommitted changes" if dirty else "")
    return (Revision(base, f"`{resolved.stdout.strip()[:7]}`"), Revision(WORKSPACE, workspace_detail))


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


def revision_file(root: Path, revision: str | None, path: str) -> bytes | None:
    """A file's bytes as committed at `revision` (None: as in the workspace), or None when it is not there."""
    if revision is None:
        return (root / path).read_bytes() if (root / path).is_file() else None
    result = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True)
    return result.stdout if result.returncode == 0 else None


def _revision_json(root: Path, revision: str | None, path: str) -> Any:
    """A JSON file at a git revision (None: the workspace), or None when absent or unreadable."""
    content = revision_file(root, revision, path)
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _operating_point(metrics: Any, x: str) -> tuple[float, float] | None:
    """Where the chosen threshold sits on the precision-recall or ROC curve."""
    if not isinstance(metrics, dict) or not all(k in metrics for k in ("precision", "recall", "fp", "tn")):
        return None
    if x == "recall":
        return metrics["recall"], metrics["precision"]
    negatives = metrics["fp"] + metrics["tn"]
    return (metrics["fp"] / negatives if negatives else 0.0), metrics["recall"]


def curves_figure(root: Path, base: str) -> plt.Figure | None:
    """Each curve of the workspace (solid) and the base (dashed, on top), and the chosen threshold (dots)."""
    revisions = ((WORKSPACE, None, "-", "#3b75af"), (base, base, "--", "#ef8636"))
    test_metrics = {label: _revision_json(root, revision, METRICS_FILE) for label, revision, _, _ in revisions}
    figure, axes = plt.subplots(2, 2, figsize=(10, 8))
    drawn = False
    for axis, (title, path, x, y, x_label, y_label) in zip(axes.flat, CURVES):
        highest = 0.0
        for label, revision, style, colour in revisions:
            records = _revision_json(root, revision, path) or []
            points = [(r[x], r[y]) for r in records
                      if isinstance(r, dict) and r.get(x) is not None and r.get(y) is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            axis.plot(xs, ys, style, color=colour, label=label)
            highest = max(highest, *xs, *ys)
            drawn = True
            point = _operating_point(test_metrics[label], x)
            if point is not None and x in ("recall", "fpr"):
                axis.plot(*point, "o", color=colour, markersize=7, markeredgecolor="black",
                          label=f"{label}: at its threshold")
        if x in ("fpr", "contacted"):
            axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="random")
        elif x == "predicted" and highest:
            axis.plot([0, highest], [0, highest], ":", color="grey", linewidth=1, label="perfect")
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    if not drawn:
        plt.close(figure)
        return None
    return figure


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def plots_section(root: Path, base: Revision, plots_dir: Path, report_dir: Path) -> list[str]:
    lines = ["## Plots", ""]
    figure = curves_figure(root, base.label)
    if figure is not None:
        curves = plots_dir / "report" / "curves.png"
        plots.save_figure(figure, curves)
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
        _dvc(["plots", "diff", base.label, "--out", str(plots_dir)], root, "dvc plots diff")
        lines.append(f"Every plot of both revisions, interactive: [`dvc plots diff {base.label}`]"
                     f"({_relative(plots_dir / 'index.html', report_dir)}) (open it in a browser; in CI, "
                     "download the workflow's `plots` artifact).")
    except PipelineError as error:
        lines.append(f"The interactive plots could not be rendered: {error.problems[0]}")
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
        *params_section(params, base_revision, workspace),
        *plots_section(root, base_revision, plots_dir, report_dir),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.report", reads_params=False)
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--output", required=True, help="output: the Markdown report")
    parser.add_argument("--plots-dir", default="dvc_plots",
                        help="output: directory of the report's images and the plots page (default: dvc_plots)")
    args = parser.parse_args(argv)
    root = repository_root(Path.cwd())
    output = Path(args.output).resolve()
    report = build_report(root, args.base, Path(args.plots_dir).resolve(), output.parent)
    with atomic_path(output) as tmp:
        tmp.write_text(report)
    print(f"report: wrote {args.output} (base {args.base})")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
