"""The user's workspace is safe under `dvc repro` and `dvc exp`: a failure loses nothing.

In copies of the session's reproduced test repository:
- a bad param, a bad data file and a stage killed part-way, each under `dvc repro`,
  leave every output and every tracked file as it was (DVC keeps `persist` outputs);
- a missing data file stops at DVC's own message, outputs untouched;
- `dvc exp run --temp -S` then `dvc exp apply` rewrite only the changed value's line
  of a params.yaml laid out as the committed one, its comments intact;
- the test suite itself passes in a workspace changed as the README tells users to.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from stages.lib.core.params import load_params
from tests.helpers import (
    REPO_ROOT,
    TEST_PARAMS,
    copy_repo,
    dvc,
    edit_params_file,
    git,
    output_files,
    python_module,
    repro_killed_during,
    stages_run,
)

pytestmark = pytest.mark.e2e


def state(repo: Path) -> dict[Path, bytes]:
    """The bytes of every output and every file git tracks, but params.yaml (the tests change it)."""
    tracked = [repo / name for name in git("ls-files", cwd=repo).stdout.split() if name != "params.yaml"]
    return {path: path.read_bytes() for path in sorted(set(output_files(repo)) | set(tracked)) if path.is_file()}


@pytest.fixture
def repo(reproduced_repo, tmp_path) -> Path:
    return copy_repo(reproduced_repo, tmp_path / "repo")


def assert_failed_leaving_everything(repo: Path, before: dict, result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0, result.stdout
    after = state(repo)
    assert after.keys() == before.keys(), f"missing: {sorted(set(before) - set(after))}"
    changed = [str(p.relative_to(repo)) for p in before if before[p] != after[p]]
    assert not changed, f"changed by a failed run: {changed}"
    assert git("status", "--porcelain", cwd=repo).stdout.strip() == "M params.yaml"


def typo_in_tune(repo: Path) -> None:
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("  n_iter:", "  n_iters:"))  # the README's typo


def target_not_in_the_data(repo: Path) -> None:
    edit_params_file(repo / "params.yaml", {"data.target": "bought"})


@pytest.mark.parametrize("break_it, message", [
    (typo_in_tune, "tune.n_iters: unknown key; did you mean 'n_iter'?"),
    (target_not_in_the_data, "target column 'bought' (data.target) not found"),
], ids=["bad-param", "bad-data"])
def test_a_stage_that_refuses_its_input_under_dvc_repro_keeps_every_output(repo, break_it, message):
    before = state(repo)
    break_it(repo)
    result = dvc("repro", cwd=repo, check=False)
    assert message in result.stderr
    assert_failed_leaving_everything(repo, before, result)


def test_a_missing_data_file_stops_at_dvcs_message_and_keeps_every_output(repo):
    before = state(repo)
    edit_params_file(repo / "params.yaml", {"data.path": "data/raw/customerz.csv"})
    result = dvc("repro", cwd=repo, check=False)
    # DVC checks a stage's deps before it runs the stage; the README's troubleshooting table shows this line.
    assert "ERROR: failed to reproduce 'preprocess': [Errno 2] No such file or directory" in result.stderr
    assert "customerz.csv" in result.stderr
    assert_failed_leaving_everything(repo, before, result)


def test_a_stage_killed_under_dvc_repro_keeps_every_output(repo, tmp_path):
    before = state(repo)
    edit_params_file(repo / "params.yaml", {"tune.n_iter": 3})
    printed = repro_killed_during(repo, "tune", tmp_path / "repro.log")
    assert_failed_leaving_everything(repo, before, subprocess.CompletedProcess([], -9, printed, ""))


def committed_layout_with(values: dict, path: Path) -> str:
    """The committed params.yaml's text (its comments and layout) holding `values`, as DVC would write it."""
    yaml_rt = YAML()
    document = yaml_rt.load((REPO_ROOT / "params.yaml").read_text())

    def assign(node, source):
        for key, value in source.items():
            if isinstance(value, dict) and key != "search_space":
                assign(node[key], value)
            elif node.get(key) != value:
                node[key] = value
    assign(document, values)
    with open(path, "w") as handle:
        yaml_rt.dump(document, handle)
    return path.read_text()


def test_an_experiment_rewrites_only_the_value_it_sets(repo):
    text = committed_layout_with(TEST_PARAMS, repo / "params.yaml")
    assert yaml.safe_load(text) == TEST_PARAMS  # the same values: nothing to re-run
    git("commit", "-q", "-am", "params in the committed layout", cwd=repo)
    assert "up to date" in dvc("status", cwd=repo).stdout
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    assert len(comments) > 20

    run = dvc("exp", "run", "--temp", "-S", "evaluate.top_fraction=0.2", "-n", "top-fifth", cwd=repo)
    assert stages_run(run.stdout) == ["evaluate"]
    assert (repo / "params.yaml").read_text() == text  # --temp: the workspace is untouched
    dvc("exp", "apply", "top-fifth", cwd=repo)
    applied = (repo / "params.yaml").read_text()
    changed = [(old, new) for old, new in zip(text.splitlines(), applied.splitlines()) if old != new]
    assert len(applied.splitlines()) == len(text.splitlines())
    assert len(changed) == 1 and "top_fraction: 0.2" in changed[0][1] and "#" in changed[0][1], changed
    assert all(comment in applied for comment in comments)
    assert load_params(repo / "params.yaml").evaluate.top_fraction == 0.2


def test_the_test_suite_passes_in_a_workspace_changed_as_the_readme_says(tmp_path):
    # The README's daily loop changes a param and commits the new metrics; "Bring your own data" tracks a
    # table with DVC and points data: at it. The tests must not read either: they bring their own params and
    # repositories.
    workspace = tmp_path / "workspace"
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO_ROOT).stdout.split()
    for name in listed:
        if (REPO_ROOT / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            (workspace / name).write_bytes((REPO_ROOT / name).read_bytes())
    git("init", "-q", cwd=workspace)
    edit_params_file(workspace / "params.yaml", {
        "threshold.objective": "min_precision",
        "data": {"path": "data/customers.csv", "events": "data/raw/events", "target": "converted",
                 "positive_label": "Yes", "id_columns": ["account_id"], "categorical_columns": None,
                 "duplicate_ids": "warn", "time_column": None, "gap_periods": 0},
    })
    (workspace / "data" / "customers.csv").write_text("account_id,visits,converted\nA1,3,Yes\nA2,1,No\n")
    dvc("add", "data/customers.csv", cwd=workspace)
    git("add", "-A", cwd=workspace)
    git("commit", "-q", "-m", "the user's own data", cwd=workspace)
    # The daily loop's commit, docs not rebuilt: new metrics beside the README's table of the old ones.
    metrics = json.loads((workspace / "metrics" / "metrics.json").read_text())
    metrics["average_precision"] += 0.01
    (workspace / "metrics" / "metrics.json").write_text(json.dumps(metrics))
    git("add", "params.yaml", "dvc.lock", "metrics/", cwd=workspace)
    git("commit", "-q", "-m", "a param changed, dvc repro", cwd=workspace)
    result = python_module("pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", "-m", "not e2e",
                           "tests/test_config.py", "tests/test_calibrate.py", "tests/test_leakage.py",
                           "tests/test_docs.py", "tests/test_params_reads.py",
                           "tests/test_bad_inputs.py::test_every_params_problem_is_reported_at_once",
                           cwd=workspace, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
