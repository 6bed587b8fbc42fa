"""Benchmark results as Markdown, for the terminal when a benchmark ends."""

from __future__ import annotations

from typing import Any

from benchmarks.targets import BASELINE_NAMES, best_of, quality_scores


def _cell(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def table(header: list[str], rows: list[list[str]], align: str) -> str:
    """A markdown table; `align` has one character per column: l(eft) or r(ight)."""
    rule = ["---:" if side == "r" else "---" for side in align]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def measured_on(result: dict) -> str:
    """The machine, code and load a result was measured on (benchmarks/results.py), in words."""
    m, v = result["machine"], result["versions"]
    if result["commit"]:
        commit = f"commit {result['commit'][:12]}" + (" with uncommitted changes" if result["dirty"] else "")
    else:
        commit = (f"stored in commit {result['stored_in_commit'][:12]}, measured before results named their "
                  "commit")
    before, after = result["load"].get("before"), result["load"].get("after")
    load = f"; load {before:.1f} before, {after:.1f} after" if before is not None and after is not None else ""
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {commit}; Python {v['python']}, "
            f"LightGBM {v.get('lightgbm', '?')}{load}")


def about(result: dict) -> str:
    """One line naming a result's config, machine, code and load."""
    return f"`{result['config']}` on {measured_on(result)}."


def markdown(result: dict) -> str:
    """The `pipeline` kind's figures: every stage of every run, quality, and the targets."""
    lines = [
        about(result),
        "",
        "| run | rows | stage | wall s | CPU s | peak RSS MB | LightGBM fit s | oversample s | load |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    figures = result["figures"]
    for run in figures["runs"]:
        rows = f"{run.get('rows', 0):,}"
        for s in run["stages"]:
            failed = " (failed)" if s["exit_code"] else ""
            lines.append(
                f"| {run['label']} | {rows} | {s['stage']}{failed} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | "
                f"{s['peak_rss_mb']:,.0f} | {_cell(s.get('lightgbm_fit_s'), '.1f')} | "
                f"{_cell(s.get('oversample_s') or None, '.1f')} | {_cell(s.get('load_average'), '.1f')} |"
            )
        if run.get("completed"):
            lines.append(f"| {run['label']} | {rows} | dvc commit (hashing outputs) | {run['dvc_commit_s']:.1f} "
                         "| | | | | |")
            lines.append(f"| {run['label']} | {rows} | **total** | **{run['total_wall_s']:.1f}** | | "
                         f"**{run['peak_rss_mb']:,.0f}** | | | |")
            lines.append(f"| {run['label']} | {rows} | `dvc repro`, nothing changed | {run['noop_repro_s']:.2f} "
                         "| | | | | |")
        scoring = run.get("scoring")
        if scoring and "wall_s" in scoring:
            failed = " (failed, see the log)" if scoring["exit_code"] else ""
            lines.append(f"| {run['label']} | {scoring['rows']:,} | score (`stages.predict`, CSV in){failed} | "
                         f"{scoring['wall_s']:.1f} | {scoring['cpu_s']:.1f} | {scoring['peak_rss_mb']:,.0f} | | | "
                         f"{_cell(scoring.get('load_average'), '.1f')} |")
    lines += [
        "",
        "LightGBM fit s is summed over every fit in the stage (cross-validation workers too), so it can exceed "
        "the wall time when fits run side by side. Peak RSS is the stage's processes added up. Load is the "
        "machine's 1-minute load average when the stage ended (2 cores: above 2, other work competed for them).",
        "",
        *quality_markdown(figures["runs"]),
        "",
        "| target | limit | measured | met | margin |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in figures.get("targets", []):
        met = {True: "yes", False: "**no**", None: "not run"}[t["met"]]
        lines.append(f"| {t['target']} | {t['limit']} | {t['measured']} | {met} | {t['margin']} |")
    return "\n".join(lines) + "\n"


def _flaml_note(flaml: dict) -> str:
    if flaml.get("status") != "run":
        return flaml.get("status", "not run")
    return (f"{flaml['configs_tried']} configs in a {flaml.get('time_budget_s', 60):.0f} s budget, "
            f"{flaml['wall_s']:.0f} s wall, {flaml['cpu_s']:.0f} s CPU, n_jobs {flaml['n_jobs']}, "
            f"load {flaml['load_average']:.1f}")


def _with_se(score: float | None, baseline: dict) -> str:
    if score is None:
        return "not run"
    se = baseline.get("average_precision_difference_se")
    return f"{score:.4f}" + (f" ({se:.4f})" if se is not None else "")


def quality_markdown(runs: list[dict]) -> list[str]:
    """Test average precision per run: the pipeline, the ideal scorer, and the alternatives on the same split."""
    lines = [
        "Quality: test average precision (AP) on the same test split; every alternative is fitted on the same "
        "processed training split. Ideal: the true probabilities (generated data only). FLAML: LightGBM AutoML, "
        "`metric=\"ap\"`, `time_budget=60` (`benchmarks/flaml_baseline.py`); its wall time includes loading the "
        "data and refitting the best config on the whole training split. Load: the 1-minute load average when "
        "FLAML ended (2 cores). Ships: the model family `tune` chose (model.family auto). se: the standard "
        "error of the pipeline's AP minus that alternative's, by paired bootstrap of the test split.",
        "",
        "| run | rows | test rows (buyers) | ships | pipeline AP | ideal AP | pipeline / ideal | pipeline ROC AUC | "
        + " | ".join(f"{name} AP (se)" for name in BASELINE_NAMES.values()) + " | best | FLAML search |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    unmeasured = []
    for run in runs:
        quality = run.get("quality")
        if not quality:
            unmeasured.append(run["label"])
            continue
        scores = quality_scores(run)
        best = best_of(scores)
        cells = [_with_se(scores[name], quality["baselines"].get(name, {})) for name in BASELINE_NAMES]
        flaml = quality["baselines"].get("flaml") or {}
        lines.append(
            f"| {run['label']} | {run.get('rows', 0):,} | {quality['test_rows']:,} ({quality['test_buyers']:,}) | "
            f"{quality.get('family', 'lightgbm').replace('_', ' ')} | **{quality['average_precision']:.4f}** | "
            f"{_cell(quality.get('ideal_average_precision'), '.4f')} | "
            f"{_cell(quality.get('average_precision_ratio'), '.3f')} | {quality['roc_auc']:.4f} | "
            + " | ".join(cells)
            + f" | {'pipeline' if best == 'pipeline' else BASELINE_NAMES.get(best, '')} | {_flaml_note(flaml)} |"
        )
    if unmeasured:
        lines += ["", f"Quality not recorded for: {', '.join(unmeasured)} (measured before the benchmark kept it)."]
    tables = [run["table"] for run in runs if run.get("table")]
    if tables:
        lines += ["", *[f"Own table: {table}." for table in tables]]
    return lines
