"""The benchmark's results as Markdown (benchmarks/results.md)."""

from __future__ import annotations

from typing import Any


def _cell(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}, LightGBM {m['lightgbm']}.",
        "",
        *[f"    {command}" for command in results.get("commands", [])],
        "",
        "| run | rows | stage | wall s | CPU s | peak RSS MB | LightGBM fit s | oversample s | load |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
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
        "| target | limit | measured | met | margin |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "not run"}[t["met"]]
        lines.append(f"| {t['target']} | {t['limit']} | {t['measured']} | {met} | {t['margin']} |")
    return "\n".join(lines) + "\n"
