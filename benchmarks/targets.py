"""The benchmark's targets, checked against measured runs, each with its margin."""

from __future__ import annotations

DEFAULT_LABEL = "default"
OWN_TABLE_LABEL = "own table"
THREE_COLUMN_LABEL = "three-column table"

# The alternatives the quality target compares the pipeline with, as results.json names them
# (run["quality"]["baselines"]) and as the tables print them.
BASELINE_NAMES = {
    "logistic_regression": "logistic regression",
    "default_lightgbm": "default LightGBM",
    "flaml": "FLAML 60 s",
}

# The targets of the performance issue, checked against the measured runs.
SCRATCH_REPRO_LIMIT_S = 300
NOOP_REPRO_LIMIT_S = 3
ONE_MILLION_LIMIT_S = 15 * 60
ONE_MILLION_MEMORY_LIMIT_MB = 6 * 1024
TEN_MILLION_MEMORY_LIMIT_MB = 16 * 1024
TIME_PER_ROW_GROWTH_LIMIT = 1.5
TRAIN_OUTSIDE_LIGHTGBM_LIMIT = 0.25


def _run(runs: list[dict], label: str) -> dict | None:
    return next((r for r in runs if r["label"] == label and r.get("completed")), None)


def _by_rows(runs: list[dict], rows: int) -> dict | None:
    return next((r for r in runs if r["label"] != DEFAULT_LABEL and r.get("rows") == rows), None)


def _stage(run: dict, name: str) -> dict | None:
    return next((s for s in run["stages"] if s["stage"] == name), None)


def _target(name: str, limit: str, measured: str | None, met: bool | None, margin: str = "") -> dict:
    return {"target": name, "limit": limit, "measured": measured or "not run",
            "met": met, "margin": margin if measured else ""}


def _over(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return f"{limit - value:,.1f} {unit} to spare"
    return f"missed by {value - limit:,.1f} {unit} ({value / limit - 1:.0%})"


def check_targets(runs: list[dict]) -> list[dict]:
    targets = []
    default = _run(runs, DEFAULT_LABEL)
    total = default["total_wall_s"] if default else None
    targets.append(_target("committed default `dvc repro` from scratch", f"<= {SCRATCH_REPRO_LIMIT_S} s",
                           f"{total:.1f} s" if default else None,
                           total <= SCRATCH_REPRO_LIMIT_S if default else None,
                           _over(total, SCRATCH_REPRO_LIMIT_S, "s") if default else ""))
    noop = default["noop_repro_s"] if default else None
    targets.append(_target("`dvc repro` with nothing changed", f"< {NOOP_REPRO_LIMIT_S} s",
                           f"{noop:.2f} s" if default else None,
                           noop < NOOP_REPRO_LIMIT_S if default else None,
                           _over(noop, NOOP_REPRO_LIMIT_S, "s") if default else ""))
    million = _by_rows(runs, 1_000_000)
    done = bool(million and million.get("completed"))
    targets.append(_target("1,000,000 rows end to end", f"< {ONE_MILLION_LIMIT_S} s",
                           f"{million['total_wall_s']:.0f} s" if done else None,
                           million["total_wall_s"] < ONE_MILLION_LIMIT_S if done else None,
                           _over(million["total_wall_s"], ONE_MILLION_LIMIT_S, "s") if done else ""))
    targets.append(_target("1,000,000 rows peak memory", f"< {ONE_MILLION_MEMORY_LIMIT_MB:,} MB",
                           f"{million['peak_rss_mb']:,.0f} MB" if done else None,
                           million["peak_rss_mb"] < ONE_MILLION_MEMORY_LIMIT_MB if done else None,
                           _over(million["peak_rss_mb"], ONE_MILLION_MEMORY_LIMIT_MB, "MB") if done else ""))
    train = _stage(million, "train") if done else None
    if train and train.get("lightgbm_fit_s"):
        share = (train["wall_s"] - train["lightgbm_fit_s"]) / train["wall_s"]
        targets.append(_target("1,000,000 rows: train stage time outside LightGBM's fit",
                               f"<= {TRAIN_OUTSIDE_LIGHTGBM_LIMIT:.0%}", f"{share:.1%}",
                               share <= TRAIN_OUTSIDE_LIGHTGBM_LIMIT,
                               f"{(TRAIN_OUTSIDE_LIGHTGBM_LIMIT - share) * 100:.1f} points to spare"
                               if share <= TRAIN_OUTSIDE_LIGHTGBM_LIMIT
                               else f"missed by {(share - TRAIN_OUTSIDE_LIGHTGBM_LIMIT) * 100:.1f} points"))
    else:
        targets.append(_target("1,000,000 rows: train stage time outside LightGBM's fit",
                               f"<= {TRAIN_OUTSIDE_LIGHTGBM_LIMIT:.0%}", None, None))
    ten = _by_rows(runs, 10_000_000)
    ten_done = bool(ten and ten.get("completed"))
    targets.append(_target("10,000,000 rows completes", "completes",
                           ("completed" if ten_done else f"failed in {ten.get('failed_stage')}") if ten else None,
                           ten_done if ten else None))
    targets.append(_target("10,000,000 rows peak memory", f"< {TEN_MILLION_MEMORY_LIMIT_MB:,} MB",
                           f"{ten['peak_rss_mb']:,.0f} MB" if ten_done else None,
                           ten["peak_rss_mb"] < TEN_MILLION_MEMORY_LIMIT_MB if ten_done else None,
                           _over(ten["peak_rss_mb"], TEN_MILLION_MEMORY_LIMIT_MB, "MB") if ten_done else ""))
    if ten_done and done:
        growth = (ten["total_wall_s"] / ten["rows"]) / (million["total_wall_s"] / million["rows"])
        targets.append(_target("time per row, 10M vs 1M", f"<= {TIME_PER_ROW_GROWTH_LIMIT}x", f"{growth:.2f}x",
                               growth <= TIME_PER_ROW_GROWTH_LIMIT, _over(growth, TIME_PER_ROW_GROWTH_LIMIT, "x")))
    else:
        targets.append(_target("time per row, 10M vs 1M", f"<= {TIME_PER_ROW_GROWTH_LIMIT}x", None, None))
    return targets + check_quality_targets(runs)


def quality_scores(run: dict) -> dict[str, float | None]:
    """Test average precision of the pipeline and of each alternative (None: not run) for one run."""
    quality = run.get("quality") or {}
    scores: dict[str, float | None] = {"pipeline": quality.get("average_precision")}
    baselines = quality.get("baselines") or {}
    for name in BASELINE_NAMES:
        scores[name] = (baselines.get(name) or {}).get("average_precision")
    return scores


def best_of(scores: dict[str, float | None]) -> str | None:
    """The name with the highest average precision; the pipeline wins ties."""
    measured = {name: ap for name, ap in scores.items() if ap is not None}
    return max(measured, key=lambda name: (measured[name], name == "pipeline")) if measured else None


def quality_target(run: dict) -> dict:
    """Target: the pipeline's test average precision is at least every alternative's on the same split."""
    rows = f"{run.get('rows', 0):,}"
    table = f"{rows} rows" if run["label"] == rows else f"{run['label']} ({rows} rows)"
    name = f"{table}: test average precision >= every baseline"
    limit = ">= " + ", ".join(BASELINE_NAMES.values())
    scores = quality_scores(run)
    ap = scores.pop("pipeline")
    if ap is None:
        return _target(name, limit, None, None)
    measured_baselines = {b: v for b, v in scores.items() if v is not None}
    missing = [BASELINE_NAMES[b] for b, v in scores.items() if v is None]
    if not measured_baselines:
        return _target(name, limit, f"{ap:.4f}; no baseline run", None)
    rival = max(measured_baselines, key=measured_baselines.get)
    best = measured_baselines[rival]
    measured = f"{ap:.4f} vs {BASELINE_NAMES[rival]} {best:.4f}"
    if missing:
        measured += f" ({', '.join(missing)} not run)"
    gap = ap - best
    relative = gap / best if best else 0.0
    if gap >= 0:
        margin = f"{gap:.4f} AP to spare ({relative:+.1%})"
        met = None if missing else True
    else:
        margin = f"missed by {-gap:.4f} AP ({relative:+.1%}), {BASELINE_NAMES[rival]} ranks better"
        met = False
    return _target(name, limit, measured, met, margin)


def check_quality_targets(runs: list[dict]) -> list[dict]:
    """One quality target per completed run, in the runs' order."""
    return [quality_target(run) for run in runs if run.get("completed")]
