"""The report's plots: both revisions' curves on one chart, the PNG plots side by side, `dvc plots diff`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stages.lib.core.errors import PipelineError
from stages.lib.core.files import atomic_path
from stages.lib.evaluation import images, plot_data
from stages.lib.report.formatting import METRICS_FILE
from stages.lib.report.revisions import WORKSPACE, Revision, revision_file, revision_json, run_dvc

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
