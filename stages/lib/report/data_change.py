"""Whether two revisions ran on the same data: the same table, target, time column and test split.

When they did not, their metrics are not a change a param made, so the report says so first and
shows the two runs side by side instead of as deltas (stages.lib.report.markdown).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from stages.lib.report.formatting import format_value
from stages.lib.report.revisions import revision_file

# The params that decide which rows, which label, and which of them are the test split.
SPLIT_PARAMS = ("data.path", "data.target", "data.positive_label", "data.time_column", "data.gap_periods",
                "data.id_columns", "preprocess.test_size", "preprocess.test_periods", "base.seed")


def table_hash(root: Path, revision: str | None) -> str | None:
    """The hash dvc.lock records for preprocess's input table at `revision` (None: the workspace)."""
    content = revision_file(root, revision, "dvc.lock")
    try:
        stages = (yaml.safe_load(content) or {}).get("stages", {}) if content else {}
    except yaml.YAMLError:
        return None
    for dep in (stages.get("preprocess") or {}).get("deps") or []:
        path = str(dep.get("path", ""))
        if not path.startswith("stages/") and not path.endswith(".py"):
            return dep.get("md5")
    return None


def data_changes(root: Path, base: str, params_diff: dict) -> list[str]:
    """What differs in the data between `base` and the workspace, one phrase each; empty when nothing does."""
    changed = params_diff.get("params.yaml", {})
    phrases = [f"`{name}` {format_value(changed[name].get('old'))} → {format_value(changed[name].get('new'))}"
               for name in SPLIT_PARAMS if name in changed]
    before, now = table_hash(root, base), table_hash(root, None)
    if before and now and before != now:
        phrases.append("the table's content (dvc.lock's hash of preprocess's input)")
    return phrases
