"""stages.predict on a small reproduced copy of the repository, run as a user runs it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import predict
from stages.lib.core.cli import run_stage
from stages.lib.core.files import read_json
from stages.lib.data.examples import parquet_parts_of
from tests.helpers import python_module

pytestmark = pytest.mark.e2e  # scores with the model of a reproduced repository

OUTPUT_COLUMNS = ["customer_id", "purchase_probability", "will_buy", "rank", "decile"]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def score(reproduced_repo, monkeypatch, capsys):
    """Run `python -m stages.predict` in-process from the repository root (the CLI tests use a subprocess)."""
    monkeypatch.chdir(reproduced_repo)

    def run_predict(input_path: Path, output_path: Path, *options: str, check: bool = True) -> Outcome:
        capsys.readouterr()
        code = run_stage(predict.main, ["--input", str(input_path), "--output", str(output_path), *options])
        captured = capsys.readouterr()
        outcome = Outcome(code, captured.out, captured.err)
        if check:
            assert code == 0, outcome.stderr
        return outcome

    return run_predict


def assert_refused(result, output: Path, *phrases: str) -> str:
    """Exit code 2, one `error:` line on stderr naming every phrase, no traceback, no output file."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not output.exists()
    return lines[0]


def test_scores_every_row_with_ids_probability_decision_rank_and_decile(reproduced_repo, customers_csv, tmp_path):
    output = tmp_path / "scores.csv"
    result = python_module("stages.predict", "--input", str(customers_csv), "--output", str(output),
                           cwd=reproduced_repo)
    scores = pd.read_csv(output)
    given = pd.read_csv(customers_csv)
    threshold = read_json(reproduced_repo / "models/threshold.json")["threshold"]

    assert list(scores.columns) == OUTPUT_COLUMNS
    assert scores["customer_id"].tolist() == given["customer_id"].tolist()  # every row, input order
    assert scores["purchase_probability"].between(0, 1).all()
    assert (scores["will_buy"] == (scores["purchase_probability"] >= threshold).astype(int)).all()
    assert 0 < scores["will_buy"].sum() < len(scores)
    assert sorted(scores["rank"]) == list(range(1, len(scores) + 1))
    by_rank = scores.sort_values("rank")
    assert by_rank["purchase_probability"].is_monotonic_decreasing
    assert by_rank["decile"].is_monotonic_increasing
    assert scores["decile"].value_counts().sort_index().tolist() == [len(scores) // 10] * 10
    # The training export's label is not a feature: ignored, and said so.
    assert "purchased" in result.stderr and "ignored" in result.stderr
    # Buyers in the input should be ranked higher than non-buyers on average.
    assert scores.loc[given["purchased"] == 1, "rank"].mean() < scores.loc[given["purchased"] == 0, "rank"].mean()


def test_chunked_threaded_and_parquet_scoring_give_the_same_scores(reproduced_repo, customers_csv, tmp_path, score):
    whole = tmp_path / "whole.csv"
    score(customers_csv, whole)
    chunked = tmp_path / "chunked.csv"
    score(customers_csv, chunked, "--batch-rows", "37")
    assert chunked.read_bytes() == whole.read_bytes()

    threaded = tmp_path / "threaded.csv"
    score(customers_csv, threaded, "--threads", "2", "--batch-rows", "50")
    single = tmp_path / "single.csv"
    score(customers_csv, single, "--threads", "1")
    assert threaded.read_bytes() == single.read_bytes() == whole.read_bytes()

    parquet_in = tmp_path / "customers.parquet"
    pd.read_csv(customers_csv).to_parquet(parquet_in)
    parquet_out = tmp_path / "scores.parquet"
    score(parquet_in, parquet_out, "--batch-rows", "64")
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_out), pd.read_csv(whole), check_dtype=False)


def test_a_directory_or_glob_of_parquet_files_scores_as_one_table(reproduced_repo, customers_csv, tmp_path, score):
    whole = tmp_path / "whole.parquet"
    score(customers_csv, whole)
    folder = parquet_parts_of(customers_csv, tmp_path / "customers")
    for given in (folder, folder / "customers-*.parquet"):
        output = tmp_path / f"scores-{len(str(given))}"
        score(given, output, "--batch-rows", "64")
        assert [p.name for p in output.iterdir()] == ["part-00000.parquet"]
        pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(whole))
    # A second run replaces the earlier run's directory.
    score(folder, output)
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(whole))


def test_a_directory_output_never_replaces_the_users_own_files(reproduced_repo, customers_csv, tmp_path, score):
    output = tmp_path / "reports"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    result = score(customers_csv, output, check=False)
    assert result.returncode == 2 and "notes.txt" in result.stderr and "give a new directory" in result.stderr
    assert [p.name for p in output.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("given, options, phrases", [
    ("nothing/*.parquet", (), ("no .parquet files found",)),
    ("customers.csv", ("--engine", "dask"), ("--engine dask reads parquet", "without a suffix")),
])
def test_a_bad_partitioned_input_is_one_error_line(customers_csv, tmp_path, score, given, options, phrases):
    source = customers_csv if given == "customers.csv" else tmp_path / given
    output = tmp_path / "scores"
    assert_refused(score(source, output, *options, check=False), output, *phrases)


def test_unseen_categories_and_missing_values_are_scored(reproduced_repo, customers_csv, tmp_path, score):
    frame = pd.read_csv(customers_csv).head(40)
    frame.loc[0:4, "region"] = "Atlantis"
    frame.loc[5:9, "device"] = "wristwatch"
    features = [c for c in frame.columns if c not in ("customer_id", "purchased")]
    frame.loc[10:14, features] = np.nan
    edited = tmp_path / "edited.csv"
    frame.to_csv(edited, index=False)
    output = tmp_path / "scores.csv"
    score(edited, output)
    scores = pd.read_csv(output)
    assert len(scores) == 40
    assert scores["purchase_probability"].notna().all() and scores["purchase_probability"].between(0, 1).all()


def test_missing_columns_are_all_named(reproduced_repo, customers_csv, tmp_path, score):
    frame = pd.read_csv(customers_csv).drop(columns=["customer_id", "age", "region", "spend_12m"])
    partial = tmp_path / "partial.csv"
    frame.to_csv(partial, index=False)
    output = tmp_path / "scores.csv"
    result = score(partial, output, check=False)
    assert_refused(result, output, "customer_id", "age", "region", "spend_12m", "missing")


def test_text_in_a_numeric_column_is_refused_naming_it(reproduced_repo, customers_csv, tmp_path, score):
    frame = pd.read_csv(customers_csv)
    frame["minutes_on_site"] = frame["minutes_on_site"].astype(object)
    frame.loc[3, "minutes_on_site"] = "about ten"
    typo = tmp_path / "typo.csv"
    frame.to_csv(typo, index=False)
    output = tmp_path / "scores.csv"
    result = score(typo, output, check=False)
    assert_refused(result, output, "minutes_on_site", "about ten")


@pytest.mark.parametrize("name, content, phrase", [
    ("broken.parquet", b"PAR1 this is not parquet", "cannot be read as parquet"),
    ("absent.csv", None, "not found"),
    ("customers.xlsx", b"whatever", "unknown table format"),
])
def test_an_unreadable_input_is_one_error_line(customers_csv, tmp_path, score, name, content, phrase):
    given = tmp_path / name
    if content is not None:
        given.write_bytes(content)
    output = tmp_path / "scores.csv"
    assert_refused(score(given, output, check=False), output, name, phrase)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_empty_input_gives_an_empty_output_with_the_header(reproduced_repo, customers_csv, tmp_path, suffix, score):
    header_only = pd.read_csv(customers_csv).head(0)
    empty = tmp_path / f"empty{suffix}"
    if suffix == ".csv":
        header_only.to_csv(empty, index=False)
    else:
        header_only.to_parquet(empty)
    output = tmp_path / f"scores{suffix}"
    score(empty, output)
    scores = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    assert list(scores.columns) == OUTPUT_COLUMNS
    assert len(scores) == 0


def test_a_model_file_that_does_not_match_dvc_lock_is_refused(reproduced_repo, customers_csv, tmp_path, score):
    models = tmp_path / "models"
    shutil.copytree(reproduced_repo / "models", models)
    with open(models / "model.joblib", "ab") as handle:
        handle.write(b"\0")
    output = tmp_path / "scores.csv"
    result = python_module("stages.predict", "--input", str(customers_csv), "--output", str(output),
                           "--models", str(models), cwd=reproduced_repo, check=False)
    line = assert_refused(result, output, "model.joblib", "dvc pull", "dvc repro")
    assert "stale or modified" in line

    # The untouched copy scores: the check compares bytes, not locations.
    shutil.copy2(reproduced_repo / "models/model.joblib", models / "model.joblib")
    score(customers_csv, output, "--models", str(models))
    assert output.is_file()


def test_an_edited_threshold_is_refused(reproduced_repo, customers_csv, tmp_path, score):
    models = tmp_path / "models"
    shutil.copytree(reproduced_repo / "models", models)
    threshold = read_json(models / "threshold.json")
    threshold["threshold"] = threshold["threshold"] / 2
    (models / "threshold.json").write_text(json.dumps(threshold))
    output = tmp_path / "scores.csv"
    result = score(customers_csv, output, "--models", str(models), check=False)
    assert_refused(result, output, "threshold.json", "dvc pull")


def test_outside_the_repository_the_lock_must_be_given(reproduced_repo, customers_csv, tmp_path, score, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(reproduced_repo / "models", models)
    output = tmp_path / "scores.csv"
    # No dvc.lock above the model directory or the working directory, and no params.yaml:
    # the ID columns come with the model.
    monkeypatch.chdir(tmp_path)
    result = score(customers_csv, output, "--models", str(models), check=False)
    assert_refused(result, output, "dvc.lock", "--lock")
    score(customers_csv, output, "--models", str(models), "--lock", str(reproduced_repo / "dvc.lock"))
    assert len(pd.read_csv(output)) == len(pd.read_csv(customers_csv))


def test_reason_codes_name_what_pushed_each_score(reproduced_repo, customers_csv, tmp_path, score):
    plain, explained = tmp_path / "plain.csv", tmp_path / "explained.csv"
    score(customers_csv, plain)
    score(customers_csv, explained, "--explain", "3", "--batch-rows", "70")
    scores = pd.read_csv(explained)
    reasons = [f"reason_{k}" for k in (1, 2, 3)]
    assert list(scores.columns) == OUTPUT_COLUMNS[:3] + [c for r in reasons for c in (r, f"{r}_contribution")] \
        + OUTPUT_COLUMNS[3:]
    pd.testing.assert_frame_equal(scores[OUTPUT_COLUMNS], pd.read_csv(plain))  # reasons never change a score
    assert scores[reasons].stack().str.fullmatch(r"[\w]+=.+ \([+\-0]\)").all()
    contribution = scores[[f"{r}_contribution" for r in reasons]].to_numpy()
    assert (np.diff(np.abs(contribution), axis=1) <= 0).all()  # strongest first, whichever way
    for k, reason in enumerate(reasons):
        assert (np.sign(contribution[:, k]) == scores[reason].str[-2].map({"+": 1, "-": -1, "0": 0})).all()
    # The least likely buyers get what held them down.
    lowest = scores.nsmallest(20, "purchase_probability")
    assert (lowest["reason_1_contribution"] < 0).all()


def test_a_negative_reason_count_is_one_error_line(customers_csv, tmp_path, score):
    output = tmp_path / "scores.csv"
    assert_refused(score(customers_csv, output, "--explain", "-2", check=False), output, "--explain -2", "--explain 3")


def test_drift_is_reported_for_every_feature_and_warned_about_for_a_shifted_one(reproduced_repo, customers_csv,
                                                                               tmp_path, score):
    report = tmp_path / "drift.json"
    plain = score(customers_csv, tmp_path / "scores.csv", "--drift-report", str(report))
    assert "warning" not in plain.stderr  # the generated customers the model was trained on
    written = read_json(report)
    features = [f["feature"] for f in written["features"]]
    assert written["rows"] == 500 and written["threshold"] == 0.2
    assert sorted(features) == sorted(pd.read_csv(customers_csv).columns.drop(["customer_id", "purchased"]))
    assert not any(f["drifted"] for f in written["features"])

    shifted = pd.read_csv(customers_csv)
    shifted["sessions_30d"] = shifted["sessions_30d"] * 3 + 5
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    result = score(tmp_path / "shifted.csv", tmp_path / "shifted-scores.csv", "--drift-report", str(report))
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: drift:")]
    assert len(warning) == 1 and "1 feature(s)" in warning[0] and "sessions_30d (PSI " in warning[0], result.stderr
    written = read_json(report)
    assert [f["feature"] for f in written["features"] if f["drifted"]] == ["sessions_30d"]
    assert written["features"][0]["feature"] == "sessions_30d"  # largest PSI first
    # A higher threshold silences it; the scores are the same either way.
    quiet = score(tmp_path / "shifted.csv", tmp_path / "quiet.csv", "--drift-threshold", "1000")
    assert "warning" not in quiet.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "quiet.csv"), pd.read_csv(tmp_path / "shifted-scores.csv"))


@pytest.mark.parametrize("value", ["0", "-0.1", "nan"])
def test_a_drift_threshold_that_is_not_positive_is_one_error_line(customers_csv, tmp_path, score, value):
    output = tmp_path / "scores.csv"
    assert_refused(score(customers_csv, output, "--drift-threshold", value, check=False), output,
                   f"--drift-threshold {value}", "above 0")
