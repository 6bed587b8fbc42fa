"""Plot data for `dvc plots`: small JSON series and PNG images, written atomically.

Curves are thinned to a few hundred points so the files stay small in git
whatever the size of the test split; a confusion matrix is four counts, drawn
by the `confusion_counts` template in .dvc/plots.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stages.tables import atomic_path  # noqa: E402

MAX_CURVE_POINTS = 300
POSITIVE_NAME, NEGATIVE_NAME = "buyer", "non-buyer"


def downsample_records(curve: pd.DataFrame, order_by: str, max_points: int = MAX_CURVE_POINTS,
                       digits: int = 6) -> list[dict]:
    """At most `max_points` evenly spaced rows of a curve (first and last kept), rounded."""
    curve = curve.sort_values(order_by, kind="stable").reset_index(drop=True)
    if len(curve) > max_points:
        keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
        curve = curve.iloc[keep]
    return curve.round(digits).to_dict(orient="records")


def confusion_records(y: np.ndarray, predicted: np.ndarray) -> list[dict]:
    names = {1: POSITIVE_NAME, 0: NEGATIVE_NAME}
    return [
        {"actual": names[a], "predicted": names[p], "count": int(np.sum((y == a) & (predicted == p)))}
        for a in (1, 0) for p in (1, 0)
    ]


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    # Fixed metadata keeps the PNG bytes identical between runs.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def feature_importance_figure(importance: pd.DataFrame, top: int = 25) -> plt.Figure:
    """Horizontal bars of the `top` features by gain, largest at the top."""
    shown = importance.sort_values("gain", ascending=True).tail(top)
    figure, axis = plt.subplots(figsize=(7, max(3, 0.28 * len(shown) + 1)))
    axis.barh(shown["feature"], shown["gain"], color="#3b75af")
    axis.set_xlabel("total gain")
    axis.set_title(f"LightGBM feature importance (gain), top {len(shown)}")
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
    axis.grid(alpha=0.3)
    return figure
