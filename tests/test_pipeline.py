"""End to end: `dvc repro` in a test repository (this project's code, the tests' small params).

The tests that only read use the session's reproduced repository (conftest.py); each test that runs
`dvc repro` again (a no-op second run, an evaluate-only change, a model change read through
`dvc metrics diff`) gets a copy of its own, so no test depends on another or on their order. A
repository of its own runs on a user's own table ("Yes"/"No" target, 80+ columns).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.lib.data.examples import OWN_TABLE_DATA, own_customer_table
from tests.helpers import (
    copy_repo,
    declared_outputs,
    dvc,
    edit_params_file,
    git,
    new_repo,
    output_files,
    stages_run,
)

pytestmark = pytest.mark.e2e

STAGES = ["generate", "generate_events", "features", "preprocess", "resample", "tune", "calibrate", "train", "evaluate"]
FLAT_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
                "tp", "fp", "tn", "fn", "threshold"}
IDEAL_METRICS = {"roc_auc", "average_precision", "brier", "roc_auc_ratio", "average_precision_ratio", "brier_ratio"}


def edit_params(root: Path, changes: dict) -> None:
    edit_params_file(root / "params.yaml", changes)


def read_metrics(root: Path) -> dict:
    return json.loads((root / "metrics" / "metrics.json").read_text())


def plot_definitions(root: Path) -> dict[str, list[str]]:
    """Top-level plots of dvc.yaml: id -> the files it draws."""
    definitions = {}
    for entry in yaml.safe_load((root / "dvc.yaml").read_text()).get("plots", []):
        if isinstance(entry, str):
            definitions[entry] = [entry]
            continue
        (plot_id, spec), = entry.items()
        y = spec.get("y", {})
        definitions[plot_id] = list(y) if isinstance(y, dict) else [plot_id]
    return definitions


@pytest.fixture
def repo(reproduced_repo):
    """The session's reproduced repository, for the tests that only read it."""
    return reproduced_repo


@pytest.fixture
def own_copy(reproduced_repo, tmp_path):
    """A copy of the reproduced repository that this test alone changes."""
    return copy_repo(reproduced_repo, tmp_path / "repo")


def test_every_declared_output_exists(repo):
    declared = declared_outputs(repo)
    assert len(declared) >= 14
    for path in declared:
        files = [repo / path] if (repo / path).is_file() else list((repo / path).glob("*"))
        assert files and all(f.is_file() and f.stat().st_size > 0 for f in files), path
    # dvc.lock records the same outputs, so the paths above are what dvc resolved.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    locked = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    assert locked == set(declared)
    assert set(lock["stages"]) == set(STAGES)


def test_data_and_models_are_ignored_by_git_and_metrics_are_not(repo):
    tracked = set(git("ls-files", cwd=repo).stdout.split())
    assert not any(p.startswith(("data/", "models/")) and not p.endswith(".gitignore") for p in tracked), tracked
    assert {"metrics/metrics.json", "metrics/plots/evaluate/roc.json", "dvc.lock"} <= tracked  # cache: false
    assert git("status", "--porcelain", "--untracked-files=all", cwd=repo).stdout == ""


def test_metrics_have_every_key(repo):
    metrics = read_metrics(repo)
    assert FLAT_METRICS <= set(metrics)
    assert set(metrics["ideal"]) == IDEAL_METRICS
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == metrics["test_rows"]
    rows = yaml.safe_load((repo / "params.yaml").read_text())["generate"]["rows"]
    assert metrics["test_rows"] == pytest.approx(0.2 * rows, abs=1)
    assert 0.5 < metrics["roc_auc"] <= metrics["ideal"]["roc_auc"] + 0.05
    assert json.loads((repo / "models" / "threshold.json").read_text())["threshold"] == metrics["threshold"]
    tune = json.loads((repo / "metrics" / "tune.json").read_text())
    trace = json.loads((repo / "metrics/plots/tune_trace.json").read_text())
    assert tune["lightgbm"]["n_iter"] == 2 and len(trace) == 2
    assert tune["family"] in ("lightgbm", "logistic_regression") and set(tune["comparison"]) >= {
        "lightgbm", "logistic_regression", "difference", "standard_error"}
    resample = json.loads((repo / "metrics" / "resample.json").read_text())
    assert resample["after"]["buyers"] > resample["before"]["buyers"]


def test_plots_show_renders_every_declared_plot(repo, tmp_path):
    definitions = plot_definitions(repo)
    for plot_id, files in definitions.items():
        for name in files:
            assert (repo / name).is_file(), (plot_id, name)
    result = dvc("plots", "show", "-o", str(tmp_path / "html"), cwd=repo)
    assert "failed" not in (result.stdout + result.stderr).lower()
    html = (tmp_path / "html" / "index.html").read_text()
    for plot_id in definitions:
        if not plot_id.endswith(".png"):
            assert json.dumps(plot_id)[1:-1] in html, plot_id
    assert html.count("<img") >= 2  # the PNG plots


def test_second_repro_changes_nothing(own_copy):
    repo = own_copy
    before = {p: p.read_bytes() for p in output_files(repo)}
    again = dvc("repro", cwd=repo)
    assert stages_run(again.stdout) == []
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout
    status = dvc("status", cwd=repo)
    assert "Data and pipelines are up to date." in status.stdout
    assert {p: p.read_bytes() for p in output_files(repo)} == before


def test_evaluate_only_param_reruns_only_evaluate(own_copy):
    repo = own_copy
    edit_params(repo, {"evaluate.top_fraction": 0.2})
    result = dvc("repro", cwd=repo)
    assert stages_run(result.stdout) == ["evaluate"]
    assert read_metrics(repo)["top_fraction"] == 0.2


def test_metrics_diff_after_a_model_param_change(own_copy):
    repo = own_copy
    old = read_metrics(repo)
    # Switch between resampling and none, whichever the committed params do not use, and ship LightGBM
    # (the tests' small table may ship a logistic regression under model.family auto).
    current = yaml.safe_load((repo / "params.yaml").read_text())["resample"]["method"]
    other = "smote" if current == "none" else "none"
    edit_params(repo, {"resample.method": other, "model.family": "lightgbm"})
    result = dvc("repro", cwd=repo)
    # Everything downstream of the resample params re-runs; generate and preprocess do not.
    assert stages_run(result.stdout) == ["resample", "tune", "calibrate", "train", "evaluate"]
    new = read_metrics(repo)
    params_diff = json.loads(dvc("params", "diff", "--json", cwd=repo).stdout)
    assert params_diff["params.yaml"]["resample.method"] == {"old": current, "new": other}

    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo).stdout)["metrics/metrics.json"]
    for key in ("precision", "recall", "f1", "average_precision", "threshold"):
        assert key in diff, f"dvc metrics diff does not show {key}: {sorted(diff)}"
        assert set(diff[key]) == {"old", "new", "diff"}, key
        assert diff[key]["old"] == pytest.approx(old[key]) and diff[key]["new"] == pytest.approx(new[key])
        assert diff[key]["diff"] == pytest.approx(new[key] - old[key]), key
    assert diff["average_precision"]["diff"] != 0


@pytest.fixture(scope="module")
def own_data_repo(tmp_path_factory):
    root = new_repo(tmp_path_factory.mktemp("own-data") / "repo", {"data": dict(OWN_TABLE_DATA)})
    table = own_customer_table()
    (root / "data" / "own").mkdir(parents=True)
    table.to_csv(root / "data" / "own" / "export.csv", index=False)
    result = dvc("repro", cwd=root)
    return root, table, result


def test_own_table_runs_end_to_end_without_an_ideal_section(own_data_repo):
    root, table, result = own_data_repo
    assert stages_run(result.stdout) == STAGES
    assert table.shape[1] >= 80 and table.isna().any().sum() >= 50
    metrics = read_metrics(root)
    assert FLAT_METRICS <= set(metrics)
    assert "ideal" not in metrics
    assert metrics["actual_buyers"] == pytest.approx(0.2 * (table["converted"] == "Yes").sum(), abs=1)
    train = pd.read_parquet(root / "data/processed/train.parquet")
    assert train["account_ref"].str.startswith("AC-").all()
    assert isinstance(train["segment_3"].dtype, pd.CategoricalDtype)
    assert "__other__" in train["segment_3"].cat.categories and "rare_two" not in train["segment_3"].cat.categories
    for path in declared_outputs(root):
        assert (root / path).exists(), path
