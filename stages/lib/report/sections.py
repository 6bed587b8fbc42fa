"""The report's model sections: which family ships and why, and the model beside the alternatives."""

from __future__ import annotations

from typing import Any

from stages.lib.evaluation.comparison import Comparison, compare
from stages.lib.report.formatting import format_value
from stages.lib.report.revisions import Revision

TUNE_FILE = "metrics/tune.json"
FAMILY_NAMES = {"lightgbm": "LightGBM", "logistic_regression": "logistic regression"}


def model_section(tune: Any, base_tune: Any, base: Revision) -> list[str]:
    """Which model family ships, whether that changed, and the fresh-fold comparison that chose it."""
    if not isinstance(tune, dict) or tune.get("family") not in FAMILY_NAMES:
        return []
    family = FAMILY_NAMES[tune["family"]]
    before = base_tune.get("family") if isinstance(base_tune, dict) else None
    lines = ["## Model", ""]
    if before is not None and before != tune["family"]:
        lines.append(f"**The model family changed: {FAMILY_NAMES.get(before, before)} ({base.label}) → {family}.**")
    else:
        lines.append(f"Ships **{family}**" + (f", as {base.label} did." if before else "."))
    comparison = tune.get("comparison")
    if isinstance(comparison, dict):
        measured = Comparison(comparison["difference"], comparison["standard_error"])
        folds = (f"{comparison['folds']} time-ordered folds" if comparison.get("time_ordered")
                 else f"{comparison['folds']}x{comparison['repeats']} fresh folds")
        lines += ["", f"Chosen on {folds} of the training split "
                  f"({tune.get('scoring')}): LightGBM {format_value(comparison['lightgbm'])}, logistic regression "
                  f"{format_value(comparison['logistic_regression'])}: {measured.of('LightGBM')} "
                  f"({measured.evidence()}). LightGBM ships only when it wins by more than one standard error "
                  f"({format_value(comparison['standard_error'])})."]
    else:
        lines += ["", "Set by `model.family`; no comparison was run."]
    return lines + [""]


BASELINE_NAMES = {"logistic_regression": "logistic regression", "default_lightgbm": "LightGBM, default settings"}
BASELINE_METRICS = (("average_precision", "average precision"), ("roc_auc", "ROC AUC"),
                    ("precision_at_k", "precision at the contact budget"),
                    ("capture_rate_at_top", "buyers reached at the contact budget"),
                    ("average_precision_difference_se", "standard error of the average precision difference"))


def baselines_section(metrics: Any) -> list[str]:
    """The model beside the models a user would pick instead, on the same split; says plainly when one wins."""
    baselines = metrics.get("baselines") if isinstance(metrics, dict) else None
    if not baselines:
        return []
    names = [n for n in BASELINE_NAMES if n in baselines]
    lines = ["## Beside the alternatives", "",
             "The same training split and test rows; the contact budget is the top "
             f"{format_value(metrics.get('top_fraction'))} of the list.", "",
             "| | this model | " + " | ".join(BASELINE_NAMES[n] for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for key, label in BASELINE_METRICS:
        lines.append(f"| {label} | {format_value(metrics.get(key))} | "
                     + " | ".join(format_value(baselines[n].get(key)) for n in names) + " |")
    lines += ["", *model_beside_baselines(metrics, names), ""]
    return lines


def model_beside_baselines(metrics: dict, names: list[str]) -> list[str]:
    """The claim under the table: better, worse or no clear difference, by the paired bootstrap."""
    ours = metrics.get("average_precision") or 0.0
    measured = {n: compare(ours, metrics["baselines"][n].get("average_precision", 0.0),
                           metrics["baselines"][n].get("average_precision_difference_se")) for n in names}
    worse = [n for n in names if measured[n].verdict == "worse"]
    unclear = [n for n in names if measured[n].verdict == "no clear difference"]

    def listed(group: list[str]) -> str:
        return " and ".join(f"{BASELINE_NAMES[n]} ({format_value(metrics['baselines'][n]['average_precision'])}; "
                            f"this model minus it {measured[n].evidence()})" for n in group)

    lines = []
    if worse:
        lines.append(f"**{listed(worse)} rank{'s' if len(worse) == 1 else ''} customers better than this model "
                     f"({format_value(ours)} average precision) on this data.** Consider it before shipping.")
    if unclear:
        lines.append(f"No clear difference between this model ({format_value(ours)} average precision) and "
                     f"{listed(unclear)}: the 95 % interval of the paired bootstrap holds zero.")
    if not worse and not unclear:
        lines.append(f"This model ranks customers better than every alternative here ({format_value(ours)} "
                     "average precision; each 95 % interval of the paired bootstrap leaves out zero).")
    return lines


def periods_section(metrics: Any) -> list[str]:
    """A dated table's out-of-time test, snapshot by snapshot: the backtest beside the baselines, and drift."""
    periods = metrics.get("periods") if isinstance(metrics, dict) else None
    if not periods:
        return []
    names = [n for n in BASELINE_NAMES if n in next(iter(periods.values()))["baselines"]]
    lines = ["## Out of time, by test snapshot", "",
             "The model learned from earlier snapshot dates only; each row is one test date "
             "(`metrics.json`'s `periods`; the `dvc plots` backtest draws the average precisions).", "",
             "| snapshot | rows | buyers | average precision | " + " | ".join(BASELINE_NAMES[n] for n in names)
             + " | precision | recall | largest drift (PSI) |",
             "|---|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|---|"]
    for date, numbers in periods.items():
        feature, psi = max(numbers["drift_psi"].items(), key=lambda item: item[1])
        lines.append(f"| {date} | {numbers['rows']:,} | {numbers['buyers']:,} | "
                     f"{format_value(numbers['average_precision'])} | "
                     + " | ".join(format_value(numbers["baselines"][n]["average_precision"]) for n in names)
                     + f" | {format_value(numbers['precision'])} | {format_value(numbers['recall'])} | "
                     f"{feature} {format_value(psi)} |")
    return lines + [""]
