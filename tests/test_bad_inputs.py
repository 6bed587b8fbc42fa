"""Bad params and bad data meet one clear line on stderr, exit code 2, and untouched outputs.

Each case runs a real stage as a subprocess (`python -m stages.<name> --params ...`)
on a small table built here, then checks what a user sees: exit code 2, exactly
one line on stderr starting "error:" that names the culprit (the key or column)
and no traceback, and that every output file is as it was before the run, bytes
and modification time (one output already exists, the others do not).

The subprocesses run side by side (they spend most of their time importing
pandas and LightGBM), and each test then checks its own finished run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.files import save_object, write_json
from stages.lib.core.params import parse_params
from stages.lib.core.params_sections import GenerateParams
from stages.lib.core.tables import write_table
from stages.lib.data.schema import LABEL
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import ID_COLUMN, TARGET_COLUMN, generate_customers
from stages.lib.evaluation import plot_data
from tests.helpers import DELETE, child_env, edited_params, python_module, snapshot, temp_files, write_params

EXIT_BAD_INPUT = 2
ROWS = 1000
PREVIOUS_OUTPUT = b"the complete output of an earlier run\n"


@dataclass
class Workspace:
    """One case's folder: params.yaml, inputs under in/, outputs under out/."""

    root: Path
    stage: str
    customers: pd.DataFrame
    processed: tuple[pd.DataFrame, pd.DataFrame]
    params_path: Path = field(init=False)
    input_path: Path = field(init=False)

    def __post_init__(self):
        self.params_path = write_params(edited_params({}), self.root / "params.yaml")
        self.input_path = self.root / "in" / "customers.csv"
        (self.root / "in").mkdir(parents=True)

    # --- what a case builder calls -------------------------------------------------
    def set_params(self, **edits) -> None:
        """Edit the small params; keys use '__' for '.' (tune__n_iter)."""
        write_params(edited_params({k.replace("__", "."): v for k, v in edits.items()}), self.params_path)

    def write_params_text(self, text: str) -> None:
        self.params_path.write_text(text)

    def write_customers(self, frame: pd.DataFrame | None = None, suffix: str = ".csv") -> Path:
        self.input_path = self.root / "in" / f"customers{suffix}"
        write_table(self.customers if frame is None else frame, self.input_path)
        return self.input_path

    def write_input_bytes(self, data: bytes, suffix: str = ".csv") -> None:
        self.input_path = self.root / "in" / f"customers{suffix}"
        self.input_path.write_bytes(data)

    def valid_file_bytes(self, suffix: str) -> bytes:
        path = self.root / "valid" / f"customers{suffix}"
        write_table(self.customers, path)
        return path.read_bytes()

    # --- the stage's command line --------------------------------------------------
    @property
    def out(self) -> Path:
        return self.root / "out"

    def outputs(self) -> list[Path]:
        return {
            "generate": [self.out / "customers.csv", self.out / "true_probability.parquet"],
            "preprocess": [self.out / "train.parquet", self.out / "test.parquet", self.out / "preprocessor.joblib"],
            "resample": [self.out / "resampled.parquet", self.out / "resample.json"],
            "evaluate": [self.out / "metrics.json", *(self.out / "plots" / name for name in plot_data.TEST_PLOT_FILES)],
        }[self.stage]

    def args(self) -> list[str | Path]:
        out, inp = self.out, self.root / "in"
        stage_args = {
            "generate": ["--output", out / "customers.csv", "--probabilities", out / "true_probability.parquet"],
            "preprocess": ["--input", self.input_path, "--train", out / "train.parquet",
                           "--test", out / "test.parquet", "--preprocessor", out / "preprocessor.joblib"],
            "resample": ["--train", inp / "train.parquet", "--output", out / "resampled.parquet",
                         "--metrics", out / "resample.json"],
            "evaluate": ["--test", inp / "test.parquet", "--train", inp / "train.parquet",
                         "--model", inp / "model.joblib", "--preprocessor", inp / "preprocessor.joblib",
                         "--calibrator", inp / "calibrator.joblib", "--threshold", inp / "threshold.json",
                         "--metrics", out / "metrics.json", "--plots-dir", out / "plots"],
        }[self.stage]
        return ["--params", self.params_path, *stage_args]


@dataclass(frozen=True)
class BadInput:
    id: str
    stage: str
    build: Callable[[Workspace], None]
    # Every one of these must appear in the error line: the culprit first, then the value or the fix.
    expect: tuple[str, ...]


def _params_case(id_: str, expect: tuple[str, ...], **edits) -> BadInput:
    return BadInput(id_, "generate", lambda ws: ws.set_params(**edits), expect)


def _data_case(id_: str, edit: Callable[[pd.DataFrame], pd.DataFrame], expect: tuple[str, ...],
               **param_edits) -> BadInput:
    def build(ws: Workspace) -> None:
        if param_edits:
            ws.set_params(**param_edits)
        ws.write_customers(edit(ws.customers.copy()))
    return BadInput(id_, "preprocess", build, expect)


def _with(frame: pd.DataFrame, rows, column: str, value) -> pd.DataFrame:
    """`frame` with `value` in a few rows of `column` (text or a gap in a column of numbers)."""
    frame[column] = frame[column].astype("string" if isinstance(value, str) else "float64")
    frame.loc[frame.index[rows], column] = value
    return frame


def _dated(frame: pd.DataFrame, dates: int = 3, typo_row: int | None = None) -> pd.DataFrame:
    """`frame` as monthly snapshots: its rows cut into `dates` month ends (ISO dates), one date mistyped."""
    months = pd.date_range("2026-01-31", periods=dates, freq="ME").strftime("%Y-%m-%d").to_numpy(object)
    stamps = months[np.arange(len(frame)) * dates // len(frame)]
    if typo_row is not None:
        stamps[typo_row] = "2026-13-31"
    return frame.assign(snapshot_date=stamps)


def _keep_buyers(frame: pd.DataFrame, buyers: int) -> pd.DataFrame:
    keep = (frame[TARGET_COLUMN] == 0) | (frame[TARGET_COLUMN].eq(1).cumsum() <= buyers)
    return frame[keep]


def _training_split_with_buyers(ws: Workspace, buyers: int) -> None:
    train = ws.processed[0]
    keep = (train[LABEL] == 0) | (train[LABEL].eq(1).cumsum() <= buyers)
    write_table(train[keep], ws.root / "in" / "train.parquet")


def _evaluate_inputs(ws: Workspace, test: pd.DataFrame, model_bytes: bytes | None = None) -> None:
    inp = ws.root / "in"
    write_table(test, inp / "test.parquet")
    if model_bytes is not None:
        (inp / "model.joblib").write_bytes(model_bytes)
    save_object({"not": "a calibrator"}, inp / "calibrator.joblib")
    write_json({"threshold": 0.5}, inp / "threshold.json")


def _cut_in_half(ws: Workspace, suffix: str) -> None:
    data = ws.valid_file_bytes(suffix)
    ws.write_input_bytes(data[: len(data) // 2], suffix)


def _output_folder_is_a_file(ws: Workspace) -> None:
    ws.write_customers()
    ws.out.parent.mkdir(parents=True, exist_ok=True)
    ws.out.write_text("a file where the output folder should be\n")


CASES = [
    # params.yaml: each problem names the key's full path, the value found and what is allowed.
    _params_case("params-typo-in-optional-key", ("resample.k_neighbor", "unknown key", "did you mean 'k_neighbors'"),
                 resample__k_neighbor=3),
    _params_case("params-wrong-type", ("generate.rows", "'many'", "expected an integer"), generate__rows="many"),
    _params_case("params-test-size-above-one", ("preprocess.test_size", "1.5", "< 1.0"), preprocess__test_size=1.5),
    _params_case("params-test-size-zero", ("preprocess.test_size", "0.0", "> 0.0"), preprocess__test_size=0),
    _params_case("params-n-iter-zero", ("tune.n_iter", "0", ">= 1"), tune__n_iter=0),
    _params_case("params-k-neighbors-zero", ("resample.k_neighbors", "0", ">= 1"), resample__k_neighbors=0),
    _params_case("params-empty-search-space", ("tune.search_space", "{}", "non-empty"), tune__search_space={}),
    _params_case("params-unknown-prior", ("tune.search_space.learning_rate.prior", "'log'", "log-uniform"),
                 **{"tune__search_space__learning_rate__prior": "log"}),
    _params_case("params-unknown-resample-method", ("resample.method", "'smoote'", "did you mean 'smote'"),
                 resample__method="smoote"),
    _params_case("params-unknown-threshold-objective", ("threshold.objective", "'accuracy'", "min_precision"),
                 threshold__objective="accuracy"),
    _params_case("params-low-above-high", ("tune.search_space.num_leaves", "must be below high"),
                 **{"tune__search_space__num_leaves__low": 100}),
    _params_case("params-unknown-engine", ("compute.engine", "'dusk'", "did you mean 'dask'"),
                 compute__engine="dusk"),
    _params_case("params-dask-with-linear-leaves", ("tune.search_space.linear_tree", "compute.engine: local"),
                 compute__engine="dask", model__threads=1,
                 tune__search_space__linear_tree={"categories": [False, True]}),
    _params_case("params-auto-threads-with-linear-leaves", ("tune.search_space.linear_tree", "model.threads"),
                 model__threads="auto", tune__search_space__linear_tree={"categories": [False, True]}),
    _params_case("params-sample-rows-not-a-count", ("tune.sample_rows", "'all'", ">= 10, or auto, or null"),
                 tune__sample_rows="all"),
    _params_case("params-threads-not-a-count", ("model.threads", "'all'", "a whole number >= 1, or auto"),
                 model__threads="all"),
    _params_case("params-positive-label-is-a-list", ("data.positive_label", "[1]"), data__positive_label=[1]),
    BadInput("params-invalid-yaml", "generate",
             lambda ws: ws.write_params_text("base:\n  seed: 42\ngenerate: {rows: 10\n"), ("params.yaml", "line")),
    BadInput("params-file-missing", "generate", lambda ws: ws.params_path.unlink(), ("params.yaml", "not found")),

    # The customer table, checked before any work.
    BadInput("data-file-missing", "preprocess", lambda ws: None, ("customers.csv", "not found")),
    BadInput("data-file-empty", "preprocess", lambda ws: ws.write_input_bytes(b""), ("customers.csv", "empty")),
    BadInput("data-header-only", "preprocess", lambda ws: ws.write_customers(ws.customers.iloc[:0]),
             ("customers.csv", "no rows")),
    _data_case("data-target-renamed", lambda f: f.rename(columns={TARGET_COLUMN: "Purchased"}),
               ("'purchased'", "data.target", "did you mean 'Purchased'")),
    _data_case("data-target-one-class", lambda f: f.assign(**{TARGET_COLUMN: 0}), ("'purchased'", "one class")),
    _data_case("data-target-three-values",
               lambda f: f.assign(**{TARGET_COLUMN: np.where(np.arange(len(f)) % 50 == 0, 2, f[TARGET_COLUMN])}),
               ("'purchased'", "3 values", "exactly two")),
    _data_case("data-positive-label-absent",
               lambda f: f.assign(**{TARGET_COLUMN: f[TARGET_COLUMN].map({0: "no", 1: "yes"})}),
               ("data.positive_label", "'no'", "'yes'")),
    _data_case("data-target-has-gaps", lambda f: _with(f, [3, 17, 40], TARGET_COLUMN, np.nan),
               ("'purchased'", "missing in 3 rows")),
    _data_case("data-id-column-absent", lambda f: f.drop(columns=[ID_COLUMN]), ("'customer_id'", "data.id_columns")),
    _data_case("data-categorical-column-absent", lambda f: f.drop(columns=["region"]),
               ("'region'", "data.categorical_columns")),
    _data_case("data-column-entirely-empty", lambda f: f.assign(email_open_rate=np.nan),
               ("'email_open_rate'", "entirely empty")),
    _data_case("data-text-in-numeric-column", lambda f: _with(f, [5, 9], "age", "forty-two"),
               ("'age'", "text in 2 rows", "'forty-two'")),
    _data_case("data-duplicate-ids-as-error", lambda f: pd.concat([f, f.iloc[:3]]),
               ("3 rows repeat a customer ID", "customer_id"), data__duplicate_ids="error"),
    # A dated export (data.time_column): a date with a typo, a time column that is not there, one date only.
    _data_case("data-date-with-a-typo", lambda f: _dated(f, typo_row=7), ("'snapshot_date'", "data row 8",
               "'2026-13-31'", "2026-01-31"), data__time_column="snapshot_date"),
    _data_case("data-time-column-not-found", lambda f: _dated(f).rename(columns={"snapshot_date": "snapshot"}),
               ("'snapshot_date'", "data.time_column", "not found", "did you mean 'snapshot'"),
               data__time_column="snapshot_date"),
    _data_case("data-a-single-snapshot-date", lambda f: _dated(f, dates=1), ("1 snapshot date (2026-01-31)",
               "preprocess.test_periods=1", "leave none to train on"), data__time_column="snapshot_date"),
    _data_case("data-test-split-without-buyers", lambda f: _keep_buyers(f, 2),
               ("2 buyer rows", "preprocess.test_size")),
    BadInput("data-csv-cut-in-half", "preprocess", lambda ws: _cut_in_half(ws, ".csv"),
             ("customers.csv", "cannot be read as csv")),
    BadInput("data-parquet-cut-in-half", "preprocess", lambda ws: _cut_in_half(ws, ".parquet"),
             ("customers.parquet", "cannot be read as parquet")),
    BadInput("output-folder-is-a-file", "preprocess", _output_folder_is_a_file, ("train.parquet", "cannot write")),

    # Later stages: their inputs are checked before any work too.
    BadInput("resample-too-few-buyers-for-smote", "resample", lambda ws: _training_split_with_buyers(ws, 4),
             ("4 buyer rows", "resample.k_neighbors=5", "at most 3")),
    BadInput("resample-input-not-from-preprocess", "resample",
             lambda ws: write_table(ws.customers, ws.root / "in" / "train.parquet"), ("train.parquet", LABEL)),
    BadInput("evaluate-test-split-without-buyers", "evaluate",
             lambda ws: _evaluate_inputs(ws, ws.processed[1].assign(**{LABEL: np.int8(0)})),
             ("test.parquet", "no buyer")),
    BadInput("evaluate-model-file-cut-short", "evaluate",
             lambda ws: _evaluate_inputs(ws, ws.processed[1], model_bytes=b"\x80\x05\x95\x10"),
             ("model.joblib", "cannot be loaded", "dvc repro")),
]


@pytest.fixture(scope="module")
def export() -> pd.DataFrame:
    """This file's own customer export (more buyers than conftest's `customers`)."""
    frame, _ = generate_customers(GenerateParams(rows=ROWS, purchase_rate=0.05), seed=7)
    return frame


@pytest.fixture(scope="module")
def processed(engine, export) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = parse_params(edited_params({}))
    train, test, _ = preprocess_customers(engine, export, params.data, params.preprocess, params.base.seed)
    return train, test


@dataclass
class Run:
    workspace: Workspace
    before: dict
    after: dict
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory, export, processed) -> dict[str, Run]:
    """Build every selected case, run them all side by side, and record outputs before and after."""
    selected = {item.callspec.id for item in request.session.items
                if item.originalname == "test_bad_input_fails_cleanly" and hasattr(item, "callspec")}
    prepared = []
    for case in CASES:
        if case.id not in selected:
            continue
        workspace = Workspace(tmp_path_factory.mktemp(case.id), case.stage, export, processed)
        case.build(workspace)
        outputs = workspace.outputs()
        # One output holds an earlier run's result (it must survive); the others do not exist.
        if outputs[0].parent.is_dir() or not outputs[0].parent.exists():
            outputs[0].parent.mkdir(parents=True, exist_ok=True)
            outputs[0].write_bytes(PREVIOUS_OUTPUT)
        prepared.append((case, workspace, snapshot(outputs)))

    def execute(item):
        case, workspace, before = item
        result = python_module(f"stages.{case.stage}", *workspace.args(), check=False, timeout=300)
        return case.id, Run(workspace, before, snapshot(workspace.outputs()), result)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(execute, prepared))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_cleanly(case: BadInput, runs):
    run = runs[case.id]
    stderr, stdout = run.result.stderr, run.result.stdout
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for text in case.expect:
        assert text in lines[0], f"{text!r} not in: {lines[0]}"
    assert run.result.returncode == EXIT_BAD_INPUT
    assert run.after == run.before, "an output file was created or changed"
    assert not temp_files(run.workspace.root)


def test_every_params_problem_is_reported_at_once(tmp_path):
    params = write_params(edited_params({
        "tune.n_iters": 5, "tune.n_iter": DELETE,     # a typo: unknown key, and n_iter missing
        "generate.rows": -1,
        "resample.method": "smoot",
        "threshold.objective": "best",
        "preprocess.test_size": "a fifth",
    }), tmp_path / "params.yaml")
    output = tmp_path / "out" / "customers.csv"
    result = python_module("stages.generate", "--params", params, "--output", output,
                           "--probabilities", tmp_path / "out" / "p.parquet", check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr
    assert all(line.startswith(f"error: {params}: ") for line in lines), lines
    culprits = ["tune.n_iters", "tune.n_iter is missing", "generate.rows", "resample.method",
                "threshold.objective", "preprocess.test_size"]
    for culprit in culprits:
        assert sum(culprit in line for line in lines) >= 1, (culprit, lines)
    assert any("did you mean 'n_iter'" in line for line in lines)
    assert len(lines) == len(culprits)
    assert not output.exists()


def test_duplicate_ids_warn_by_default_and_keep_the_first_row(tmp_path, customers):
    frame = pd.concat([customers, customers.iloc[:4].assign(age=99.0)])
    source = tmp_path / "customers.csv"
    write_table(frame, source)
    params = write_params(edited_params({}), tmp_path / "params.yaml")
    out = tmp_path / "out"
    result = python_module("stages.preprocess", "--params", params, "--input", source,
                           "--train", out / "train.parquet", "--test", out / "test.parquet",
                           "--preprocessor", out / "pp.joblib", check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "4 rows repeat a customer ID" in warnings[0], result.stderr
    assert "data.duplicate_ids: error" in warnings[0]
    ids = pd.concat([pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")])[ID_COLUMN]
    assert ids.is_unique and len(ids) == len(customers)


def test_debug_shows_the_traceback(tmp_path):
    params = write_params(edited_params({"tune.n_iter": 0}), tmp_path / "params.yaml")
    args = ["--params", params, "--output", tmp_path / "c.csv", "--probabilities", tmp_path / "p.parquet"]
    debug_flag = python_module("stages.generate", *args, "--debug", check=False)
    debug_env = python_module("stages.generate", *args, env=child_env(PROPENSITY_DEBUG="1"), check=False)
    for result in (debug_flag, debug_env):
        assert result.returncode == EXIT_BAD_INPUT
        assert "Traceback" in result.stderr and "ParamsError" in result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: ") and "tune.n_iter" in result.stderr
