"""stages.report on a repository with two commits of different params."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stages.lib.evaluation.comparison import combined_standard_error, compare
from stages.lib.report.data_change import data_changes
from stages.lib.report.markdown import HEADLINE, format_change, format_value, model_section, side_by_side_sentence
from stages.lib.report.revisions import Revision
from tests.helpers import copy_repo, dvc, edit_params_file, git, python_module

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_commits(reproduced_repo, tmp_path_factory) -> Path:
    """The reproduced repository plus a commit that flags the top 20 % instead of maximising F1."""
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("report") / "repo")
    edit_params_file(repo / "params.yaml", {"threshold.objective": "top_fraction", "threshold.top_fraction": 0.2})
    dvc("repro", cwd=repo)
    git("commit", "-q", "-am", "flag the top 20 %", cwd=repo)
    return repo


def committed_metrics(repo: Path, revision: str) -> dict:
    return json.loads(git("show", f"{revision}:metrics/metrics.json", cwd=repo).stdout)


def table_row(report: str, metric: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == metric:
            return cells
    raise AssertionError(f"no row for {metric} in:\n{report}")


def test_report_shows_precision_and_recall_of_both_commits_and_the_delta(two_commits, tmp_path):
    output = tmp_path / "report.md"
    python_module("stages.report", "--base", "HEAD~1", "--output", str(output),
                  "--plots-dir", str(tmp_path / "plots"), cwd=two_commits)
    report = output.read_text()
    old, new = committed_metrics(two_commits, "HEAD~1"), committed_metrics(two_commits, "HEAD")
    assert old["recall"] != new["recall"]  # the params change must move the decision

    for metric in ("precision", "recall"):
        assert table_row(report, metric) == [
            metric, format_value(old[metric]), format_value(new[metric]),
            format_change({"old": old[metric], "new": new[metric], "diff": new[metric] - old[metric]}),
        ]
    # The average precision's change is a claim only beyond both runs' bootstrap noise.
    measured = compare(new["average_precision"], old["average_precision"],
                       combined_standard_error(new["average_precision_se"], old["average_precision_se"]))
    assert (f"Average precision {format_value(old['average_precision'])} → {format_value(new['average_precision'])}: "
            f"{measured.of('this run')} ({measured.evidence()})." in report)
    assert "The data changed" not in report  # a threshold param is not a data change
    # Headline metrics come first, in the order a reviewer weighs them.
    positions = [report.index(f"| **{name}** |") for name in HEADLINE]
    assert positions == sorted(positions)
    # The params diff names what changed, with both values.
    assert table_row(report, "threshold.objective") == ["threshold.objective", "f1", "top_fraction"]
    # Every image the report embeds exists beside it.
    images = re.findall(r'(?:\]\(|src=")([^)"]+\.png)', report)
    assert len(images) >= 5
    for image in images:
        assert (output.parent / image).is_file(), image
    assert (tmp_path / "plots/index.html").is_file()


def test_an_unknown_base_is_one_error_line(two_commits, tmp_path):
    output = tmp_path / "report.md"
    result = python_module("stages.report", "--base", "no-such-branch", "--output", str(output),
                           cwd=two_commits, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-branch" in lines[0] and lines[0].startswith("error: ")
    assert not output.exists()


def test_a_base_dvc_cannot_read_is_a_visible_warning(two_commits, tmp_path):
    """Credentials in config.local for a remote the base revision lacks make DVC skip the base."""
    repo = copy_repo(two_commits, tmp_path / "repo")
    dvc("remote", "add", "s3", "s3://bucket/path", cwd=repo)  # in the workspace only, not committed
    dvc("remote", "modify", "--local", "s3", "access_key_id", "key", cwd=repo)
    output = tmp_path / "report.md"
    result = python_module("stages.report", "--base", "HEAD~1", "--output", str(output),
                           "--plots-dir", str(tmp_path / "plots"), cwd=repo)
    report = output.read_text()
    assert "> **Warning:** DVC: failed to load metrics in revision 'HEAD~1'" in report
    assert "warning: failed to load metrics" in result.stderr


def test_the_report_says_better_only_when_the_paired_bootstrap_does():
    from stages.lib.report.markdown import baselines_section

    se = "average_precision_difference_se"
    metrics = {"average_precision": 0.40, "roc_auc": 0.9, "precision_at_k": 0.3, "capture_rate_at_top": 0.7,
               "top_fraction": 0.1,
               "baselines": {"logistic_regression": {"average_precision": 0.45, "roc_auc": 0.91,
                                                     "precision_at_k": 0.31, "capture_rate_at_top": 0.72, se: 0.01},
                             "default_lightgbm": {"average_precision": 0.35, "roc_auc": 0.88,
                                                  "precision_at_k": 0.28, "capture_rate_at_top": 0.65, se: 0.01}}}
    text = "\n".join(baselines_section(metrics))
    assert "| average precision | 0.4000 | 0.4500 | 0.3500 |" in text
    assert "**logistic regression (0.4500; this model minus it -0.0500, 95 % interval -0.0696 to -0.0304) " \
           "ranks customers better than this model" in text
    # The user's case: a baseline 0.006 below, standard error 0.0108: no clear difference, not a win.
    metrics["average_precision"], metrics["baselines"]["logistic_regression"].update(
        {"average_precision": 0.6635, se: 0.0108})
    metrics["average_precision"] = 0.6695
    metrics["baselines"]["default_lightgbm"]["average_precision"] = 0.60
    text = "\n".join(baselines_section(metrics))
    assert "better than every alternative" not in text and "**" not in text
    assert "No clear difference between this model (0.6695 average precision) and logistic regression (0.6635; " \
           "this model minus it +0.0060, 95 % interval -0.0152 to +0.0272)" in text
    # The committed default's case: ahead of both by more than 1.96 standard errors.
    metrics["baselines"]["logistic_regression"]["average_precision"] = 0.62
    text = "\n".join(baselines_section(metrics))
    assert "This model ranks customers better than every alternative here (0.6695 average precision; " in text
    # No standard error recorded (a result from before it was): never a claim.
    del metrics["baselines"]["default_lightgbm"][se]
    assert "No clear difference between this model" in "\n".join(baselines_section(metrics))


def test_the_model_section_says_which_family_ships_and_when_it_changed():
    base = Revision(label="main", detail="abc1234")
    comparison = {"folds": 5, "repeats": 2, "lightgbm": 0.40, "logistic_regression": 0.38, "difference": 0.02,
                  "standard_error": 0.004}
    now = {"family": "lightgbm", "scoring": "average_precision", "comparison": comparison}
    text = "\n".join(model_section(now, {"family": "lightgbm"}, base))
    assert "Ships **LightGBM**, as main did." in text
    assert ": LightGBM better (+0.0200, 95 % interval +0.0122 to +0.0278). LightGBM ships only when it wins by " \
           "more than one standard error (0.0040)." in text
    within = dict(now, comparison=dict(comparison, standard_error=0.015))
    assert ": no clear difference (+0.0200, 95 % interval -0.0094 to +0.0494)" in "\n".join(
        model_section(within, None, base))
    text = "\n".join(model_section(now, {"family": "logistic_regression"}, base))
    assert "**The model family changed: logistic regression (main) → LightGBM.**" in text
    by_hand = "\n".join(model_section({"family": "logistic_regression"}, None, base))
    assert "Ships **logistic regression**." in by_hand and "no comparison was run" in by_hand
    assert model_section(None, None, base) == []


def _lock(table_md5: str) -> str:
    return ("schema: '2.0'\nstages:\n  preprocess:\n    deps:\n    - path: data/own/export.csv\n"
            f"      md5: {table_md5}\n    - path: stages/preprocess.py\n      md5: abc\n")


@pytest.mark.parametrize("subject", ["target", "table"])
def test_a_run_on_other_data_is_shown_side_by_side_not_as_a_change(tmp_path, subject):
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "dvc.lock").write_text(_lock("aaa"))
    git("add", "dvc.lock", cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base", cwd=tmp_path)
    params_diff = {"params.yaml": {"threshold.objective": {"old": "f1", "new": "top_fraction"}}}
    assert data_changes(tmp_path, "HEAD", params_diff) == []
    if subject == "target":
        params_diff["params.yaml"]["data.target"] = {"old": "purchased", "new": "converted"}
        expected = "`data.target` purchased → converted"
    else:
        (tmp_path / "dvc.lock").write_text(_lock("bbb"))
        expected = "the table's content (dvc.lock's hash of preprocess's input)"
    changes = data_changes(tmp_path, "HEAD", params_diff)
    assert changes == [expected]
    metrics = {"metrics/metrics.json": {"precision": {"old": 0.4786, "new": 0.5575, "diff": 0.0789},
                                        "recall": {"old": 0.4188, "new": 0.7513, "diff": 0.3325}}}
    sentence = side_by_side_sentence(metrics, changes, Revision("main", ""), Revision("workspace", ""))
    assert sentence.startswith(f"**The data changed since main: {expected}.**")
    assert "main: precision 0.4786, recall 0.4188; workspace: precision 0.5575, recall 0.7513." in sentence
    assert "+0.0789" not in sentence and "→" not in sentence.split("**")[2]
