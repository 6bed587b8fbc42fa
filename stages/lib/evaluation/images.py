"""PNG images: the threshold curve, feature importance and the report's overlaid curves.

Drawn with matplotlib's Agg backend (no screen on CI or servers) and saved
with fixed metadata, so the same data gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from stages.lib.core.files import atomic_path  # noqa: E402


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    # Fixed metadata keeps the PNG bytes identical between runs.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def feature_importance_figure(importance: pd.DataFrame, measure: str, top: int = 25) -> plt.Figure:
    """Horizontal bars of the `top` features by importance (`measure` says what it is), largest at the top."""
    shown = importance.sort_values("importance", ascending=True).tail(top)
    figure, axis = plt.subplots(figsize=(7, max(3, 0.28 * len(shown) + 1)))
    axis.barh(shown["feature"], shown["importance"], color="#3b75af")
    axis.set_xlabel(measure.split(": ", 1)[1])
    axis.set_title(f"Feature importance ({measure}), top {len(shown)}")
    axis.grid(axis="x", alpha=0.3)
    return figure


def threshold_figure(curve: pd.DataFrame, chosen: float, objective: str) -> plt.Figure:
    """Precision, recall and F1 against the threshold, with the chosen one marked."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for column, colour in (("precision", "#3b75af"), ("recall", "#ef8636"), ("f1", "#519e3e")):
        axis.plot(curve["threshold"], curve[column], label=column, color=colour)
    axis.axvline(chosen, color="black", linestyle="--", linewidth=1)
    axis.annotate(f"chosen: {chosen:.3f}\n({objective})", xy=(chosen, 0.95), xytext=(6, 0),
                  textcoords="offset points", va="top", fontsize=9)
    axis.set_xlabel("threshold (flag customers with probability >= threshold)")
    axis.set_ylim(0, 1.02)
    axis.set_title("Out-of-fold precision, recall and F1 by threshold (training split)")
    axis.legend(loc="center right")
    if "profit" in curve:
        money = axis.twinx()
        money.plot(curve["threshold"], curve["profit"], color="#7f3fbf", linestyle=":", label="profit")
        money.set_ylabel("profit: buyer value x buyers reached - contact cost x contacts")
        money.legend(loc="upper right")
    axis.grid(alpha=0.3)
    return figure


def curves_figure(panels: list[dict], revisions: list[tuple[str, str, str]]) -> plt.Figure | None:
    """Curves of several revisions on a 2x2 grid, each revision's decision marked; None when nothing to draw.

    `panels`: one per axis, with `title`, `x`, `y`, `x_label`, `y_label`, `series`
    (revision label -> list of (x, y) points) and `points` (revision label -> the
    decision's (x, y) or None). `revisions`: (label, line style, colour), drawn in order.
    """
    figure, axes = plt.subplots(2, 2, figsize=(10, 8))
    drawn = False
    for axis, panel in zip(axes.flat, panels):
        highest = 0.0
        x = panel["x"]
        for label, style, colour in revisions:
            points = panel["series"].get(label) or []
            if not points:
                continue
            xs, ys = zip(*points)
            axis.plot(xs, ys, style, color=colour, label=label)
            highest = max(highest, *xs, *ys)
            drawn = True
            point = panel["points"].get(label)
            if point is not None:
                axis.plot(*point, "o", color=colour, markersize=7, markeredgecolor="black",
                          label=f"{label}: at its threshold")
        if x in ("fpr", "contacted"):
            axis.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="random")
        elif x == "predicted" and highest:
            axis.plot([0, highest], [0, highest], ":", color="grey", linewidth=1, label="perfect")
        axis.set_title(panel["title"])
        axis.set_xlabel(panel["x_label"])
        axis.set_ylabel(panel["y_label"])
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    if not drawn:
        plt.close(figure)
        return None
    return figure
