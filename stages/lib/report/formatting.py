"""How the report writes numbers and changes, and where it finds the test-split metrics."""

from __future__ import annotations

from typing import Any

METRICS_FILE = "metrics/metrics.json"


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
