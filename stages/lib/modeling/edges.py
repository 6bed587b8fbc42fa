"""Where the search's best point sits on the edge of its space: the ranges to widen."""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.lib.core.params_model import TuneParams

# A best value this close to a bound (share of the range, in the prior's scale) sits on the edge.
EDGE_SHARE = 0.02
# Bounds LightGBM itself sets: a best value there is not an edge the user could widen (a leaf of one row
# is the least a leaf holds).
LIGHTGBM_LIMITS = {"num_leaves": (2, None), "colsample_bytree": (None, 1.0), "subsample": (None, 1.0),
                   "feature_fraction": (None, 1.0), "bagging_fraction": (None, 1.0), "min_child_samples": (1, None),
                   "min_data_in_leaf": (1, None)}


def edges_hit(best_params: dict[str, Any], tune: TuneParams, rows: int) -> dict[str, str]:
    """Search-space dimensions whose best value sits at their low or high end: {name: "low" | "high"}.

    The ends are those searched on `rows` tuning rows (a dimension `of_rows` scales with them).
    The optimum may lie beyond such an edge; the search could not look there. An end
    that is LightGBM's own limit (2 leaves, a fraction of 1.0) is not one.
    """
    hit = {}
    for name, dim in tune.space_searched(rows).items():
        if dim.categories is not None or name not in best_params:
            continue
        value, low, high = float(best_params[name]), float(dim.low), float(dim.high)
        least, most = LIGHTGBM_LIMITS.get(name, (None, None))
        can_lower, can_raise = least is None or low > least, most is None or high < most
        if dim.prior == "log-uniform":
            value, low, high = np.log(value), np.log(low), np.log(high)
        margin = 0 if dim.type == "integer" else EDGE_SHARE * (high - low)
        if value <= low + margin and can_lower:
            hit[name] = "low"
        elif value >= high - margin and can_raise:
            hit[name] = "high"
    return hit


def edge_warning(hit: dict[str, str], best_params: dict[str, Any], tune: TuneParams, rows: int) -> str | None:
    """One line for the user: which ranges to widen, or None."""
    if not hit:
        return None

    def widen(name: str, end: str) -> str:
        key = f"tune.search_space.{name}.{end}"
        share = f", a share of the {rows:,} rows tuned on" if tune.search_space[name].of_rows else ""
        return f"{'lower' if end == 'low' else 'raise'} {key}{share}"

    parts = [f"{name} {best_params[name]} at its {end} end ({widen(name, end)})" for name, end in sorted(hit.items())]
    return ("warning: the best point of the search sits on the edge of its space, so the optimum may lie "
            "beyond it: " + "; ".join(parts))
