"""End to end: `dvc repro` in a temporary copy of this repository, with small params.

The repository's tracked files are copied into a fresh git repository, so the
test sees what a clone sees. One repro'd copy is shared by the tests below,
which run in order: outputs and metrics, plots, a no-op second run, an
evaluate-only change, and a model change read through `dvc metrics diff`. A
second copy runs on a user's own table ("Yes"/"No" target, 80+ columns).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stage_runs import SMALL_PARAMS, copy_tracked_files, edit_params_file

pytestmark = pytest.mark.e2e

# dvc and the stages' `python` come from the environment running the tests.
VENV_BIN = Path(sys.executable).parent
STAGES = ["generate", "preprocess", "resample", "tune", "calibrate", "train", "evaluate"]
FLAT_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
                "tp", "fp", "tn", "fn", "threshold"}
IDEAL_METRICS = {"roc_auc", "average_precision", "brier", "roc_auc_ratio", "average_precision_ratio", "brier_ratio"}


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROPENSITY_DEBUG")}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    })
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def copy_repository(destination: Path) -> Path:
    """The tracked files of the code under test, in a new git repository with one commit."""
    copy_tracked_files(destination)
    run(["git", "init", "-q"], destination)
    commit_all(destination, "copy of the repository under test")
    return destination


def commit_all(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], root)


def edit_params(root: Path, changes: dict) -> None:
    edit_params_file(root / "params.yaml", changes)


def stages_run(stdout: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", stdout)


def read_metrics(root: Path) -> dict:
    return json.loads((root / "metrics" / "metrics.json").read_text())


def declared_outputs(root: Path) -> list[str]:
    """Every outs/metrics/plots path of every stage in dvc.yaml, with ${...} resolved."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    context = yaml.safe_load((root / "params.yaml").read_text())
    for entry in spec.get("vars", []):
        if isinstance(entry, dict):
            context.update(entry)

    def lookup(dotted: str):
        value = context
        for key in dotted.split("."):
            value = value[key]
        return str(value)

    paths = []
    for stage in spec["stages"].values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                path = entry if isinstance(entry, str) else next(iter(entry))
                paths.append(re.sub(r"\$\{([^}]+)\}", lambda m: lookup(m.group(1)), path))
    return paths


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


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = copy_repository(tmp_path_factory.mktemp("repository"))
    edit_params(root, SMALL_PARAMS)
    commit_all(root, "small params")
    first = run(["dvc", "repro"], root)
    assert stages_run(first.stdout) == STAGES
    return root


def test_every_declared_output_exists(repo):
    declared = declared_outputs(repo)
    assert len(declared) >= 20
    for path in declared:
        assert (repo / path).is_file(), path
        assert (repo / path).stat().st_size > 0, path
    # dvc.lock records the same outputs, so the paths above are what dvc resolved.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    locked = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    assert locked == set(declared)
    assert set(lock["stages"]) == set(STAGES)


def test_data_and_models_are_ignored_by_git_and_metrics_are_not(repo):
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout
    changed = {line[3:] for line in status.splitlines()}
    assert not any(p.startswith(("data/", "models/")) for p in changed), changed
    assert "metrics/metrics.json" in changed  # cache: false, tracked by git
    assert "dvc.lock" in changed


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
    assert tune["n_iter"] == 2 and len(json.loads((repo / "metrics/plots/tune_trace.json").read_text())) == 2
    resample = json.loads((repo / "metrics" / "resample.json").read_text())
    assert resample["after"]["buyers"] > resample["before"]["buyers"]


def test_synthetic_rows_only_in_the_resampled_file(repo):
    train = pd.read_parquet(repo / "data/processed/train.parquet")
    test = pd.read_parquet(repo / "data/processed/test.parquet")
    resampled = pd.read_parquet(repo / "data/resampled/train.parquet")
    assert "__synthetic__" not in train.columns and "__synthetic__" not in test.columns
    assert resampled["__synthetic__"].sum() > 0
    assert not set(train["customer_id"]) & set(test["customer_id"])
    assert set(resampled["customer_id"].dropna()) == set(train["customer_id"])


def test_plots_show_renders_every_declared_plot(repo, tmp_path):
    definitions = plot_definitions(repo)
    for plot_id, files in definitions.items():
        for name in files:
            assert (repo / name).is_file(), (plot_id, name)
    result = run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], repo)
    assert "failed" not in (result.stdout + result.stderr).lower()
    html = (tmp_path / "html" / "index.html").read_text()
    for plot_id in definitions:
        if not plot_id.endswith(".png"):
            assert json.dumps(plot_id)[1:-1] in html, plot_id
    assert html.count("<img") >= 2  # the PNG plots


def test_second_repro_changes_nothing(repo):
    before = {p: (repo / p).read_bytes() for p in [*declared_outputs(repo), "dvc.lock"]}
    again = run(["dvc", "repro"], repo)
    assert stages_run(again.stdout) == []
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout
    status = run(["dvc", "status"], repo)
    assert "Data and pipelines are up to date." in status.stdout
    assert {p: (repo / p).read_bytes() for p in before} == before


def test_evaluate_only_param_reruns_only_evaluate(repo):
    edit_params(repo, {"evaluate.top_fraction": 0.2})
    result = run(["dvc", "repro"], repo)
    assert stages_run(result.stdout) == ["evaluate"]
    assert read_metrics(repo)["top_fraction"] == 0.2


def test_metrics_diff_after_a_model_param_change(repo):
    commit_all(repo, "baseline run")
    old = read_metrics(repo)
    # Switch between resampling and none, whichever the committed params do not use.
    current = yaml.safe_load((repo / "params.yaml").read_text())["resample"]["method"]
    other = "smote" if current == "none" else "none"
    edit_params(repo, {"resample.method": other})
    result = run(["dvc", "repro"], repo)
    # Everything downstream of the resample params re-runs; generate and preprocess do not.
    assert stages_run(result.stdout) == ["resample", "tune", "calibrate", "train", "evaluate"]
    new = read_metrics(repo)
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo).stdout)
    assert params_diff["params.yaml"]["resample.method"] == {"old": current, "new": other}

    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)["metrics/metrics.json"]
    for key in ("precision", "recall", "f1", "average_precision", "threshold"):
        assert key in diff, f"dvc metrics diff does not show {key}: {sorted(diff)}"
        assert set(diff[key]) == {"old", "new", "diff"}, key
        assert diff[key]["old"] == pytest.approx(old[key]) and diff[key]["new"] == pytest.approx(new[key])
        assert diff[key]["diff"] == pytest.approx(new[key] - old[key]), key
    assert diff["average_precision"]["diff"] != 0


def own_customer_table(rows: int = 3000, seed: int = 5) -> pd.DataFrame:
    """A user's export: text IDs, a "Yes"/"No" target, string categoricals, gaps, 90 columns."""
    rng = np.random.default_rng(seed)
    frame = {"account_ref": [f"AC-{i:06d}" for i in rng.permutation(rows)]}
    signal = rng.normal(size=rows)
    for i in range(80):
        values = rng.normal(size=rows) + (0.8 * signal if i < 5 else 0.0)
        values[rng.random(rows) < 0.05 * (i % 4)] = np.nan  # a quarter of the columns complete
        frame[f"metric_{i:02d}"] = values.round(3)
    for i in range(8):
        levels = np.array(["alpha", "beta", "gamma", "delta", "rare_one", "rare_two"], dtype=object)
        codes = rng.choice(len(levels), size=rows, p=[0.4, 0.3, 0.2, 0.095, 0.004, 0.001])
        values = levels[codes]
        values[rng.random(rows) < 0.03] = None
        frame[f"segment_{i}"] = values
    frame["plan"] = np.where(signal + rng.normal(size=rows) > 1, "premium", "basic").astype(object)
    probability = 1 / (1 + np.exp(-(-3.6 + 1.2 * signal + 0.8 * (frame["segment_0"] == "alpha"))))
    frame["converted"] = np.where(rng.random(rows) < probability, "Yes", "No").astype(object)
    return pd.DataFrame(frame)


@pytest.fixture(scope="module")
def own_data_repo(tmp_path_factory):
    root = copy_repository(tmp_path_factory.mktemp("own-data"))
    table = own_customer_table()
    (root / "data" / "own").mkdir(parents=True)
    table.to_csv(root / "data" / "own" / "export.csv", index=False)
    edit_params(root, {**SMALL_PARAMS, "data": {
        "path": "data/own/export.csv", "target": "converted", "positive_label": "Yes",
        "id_columns": ["account_ref"], "categorical_columns": None, "duplicate_ids": "warn",
    }})
    result = run(["dvc", "repro"], root)
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
        assert (root / path).is_file(), path
