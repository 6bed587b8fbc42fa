"""The features stage as a user runs it: bad event tables get one line and lose nothing; scoring at a date builds
the features training built at that date, to the byte."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from stages.features import main as features_main
from stages.lib.core.cli import run_stage
from stages.lib.core.tables import read_table, write_table
from tests.helpers import FROM_EVENTS, edited_params, python_module, snapshot, write_params

SNAPSHOTS = ["2025-01-31", "2025-02-28"]


def _event_tables(folder, customers: int = 200, events: int = 3000, seed: int = 5):
    """A small events directory shaped as the tests' params expect: customers, orders, sessions."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.arange(customers) + 500
    start = pd.Timestamp("2024-03-01")
    write_table(pd.DataFrame({"customer_id": ids, "joined_on": start + pd.to_timedelta(rng.integers(0, 300, customers),
                                                                                       unit="D"),
                              "region": rng.choice(["North", "South"], customers)}), folder / "customers.parquet")

    def times(n):
        return start + pd.to_timedelta(rng.integers(0, 400 * 86_400, n), unit="s")

    write_table(pd.DataFrame({"customer_id": rng.choice(ids, events), "ordered_at": times(events),
                              "amount": rng.gamma(2, 20, events).round(2)}), folder / "orders.parquet")
    pd.DataFrame({"customer_id": rng.choice(ids, events), "started_at": times(events).strftime("%Y-%m-%dT%H:%M:%S"),
                  "pages": rng.integers(1, 9, events), "saw_checkout": rng.integers(0, 2, events)}
                 ).to_csv(folder / "sessions.csv", index=False)
    return folder


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with params (the tests', two snapshots) and a good events directory, the stage run once there."""
    monkeypatch.chdir(tmp_path)
    write_params(edited_params({"features.snapshots": SNAPSHOTS}), tmp_path / "params.yaml")
    _event_tables(tmp_path / "events")
    assert run_stage(features_main, ["--events", "events", "--output", "out/features.parquet",
                                     "--spec", "out/features.json"]) == 0
    return tmp_path


def _run(capsys) -> tuple[int, str]:
    code = run_stage(features_main, ["--events", "events", "--output", "out/features.parquet",
                                     "--spec", "out/features.json"])
    return code, capsys.readouterr().err


def test_a_good_run_says_what_it_built(workspace, capsys):
    table = read_table(workspace / "out" / "features.parquet")
    assert sorted(table["snapshot_date"].unique()) == SNAPSHOTS
    assert {"orders_count_30d", "orders_amount_sum_365d", "sessions_saw_checkout_sum_30d", "days_since_last_orders",
            "no_sessions_yet", "tenure_days", "region", "purchased"} <= set(table.columns)
    code, err = _run(capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize("table, change, expected", [
    ("orders", lambda t: t.drop(columns=["customer_id"]), r"orders.parquet: no column 'customer_id' "
                                                          r"\(features.id_column\)"),
    ("sessions", lambda t: t.drop(columns=["started_at"]), r"sessions.csv: no column 'started_at' "
                                                           r"\(features.tables.sessions.timestamp\)"),
    ("sessions", lambda t: t.assign(started_at=t["started_at"].where(t.index != 6, "yesterday")),
     r"sessions.csv: time column 'started_at' \(features.tables.sessions.timestamp\) holds 'yesterday', not a "
     r"date, in data row 7"),
    ("customers", lambda t: t.drop(columns=["joined_on"]), r"customers.parquet: no column 'joined_on' "
                                                           r"\(features.joined_column\)"),
    ("orders", lambda t: t.assign(amount="many"), r"column 'amount' \(features.tables.orders.sums\) is not numeric"),
])
def test_a_bad_event_table_is_one_line_and_loses_nothing(workspace, capsys, table, change, expected):
    path = next((workspace / "events").glob(f"{table}.*"))
    frame = pd.read_csv(path) if path.suffix == ".csv" else read_table(path)
    if path.suffix == ".csv":
        change(frame).to_csv(path, index=False)
    else:
        write_table(change(frame), path)
    outputs = [workspace / "out" / "features.parquet", workspace / "out" / "features.json"]
    before = snapshot(outputs)
    code, err = _run(capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(expected, lines[0]), lines[0]
    assert snapshot(outputs) == before


def test_unknown_customers_and_snapshots_before_any_event_are_one_warning_each(workspace, capsys):
    orders = read_table(workspace / "events" / "orders.parquet")
    stranger = orders.iloc[:3].assign(customer_id=99_999)
    write_table(pd.concat([orders, stranger]), workspace / "events" / "orders.parquet")
    write_params(edited_params({"features.snapshots": ["2024-01-31", *SNAPSHOTS]}), workspace / "params.yaml")
    code, err = _run(capsys)
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 2, err
    assert "3 orders event(s) name customers the customers table does not hold" in lines[0]
    assert "snapshot(s) 2024-01-31 come before any event" in lines[1]
    # The stranger's orders reach no row.
    assert 99_999 not in set(read_table(workspace / "out" / "features.parquet")["customer_id"])


@pytest.mark.e2e
def test_scoring_as_of_a_date_builds_the_training_rows_of_that_date_to_the_byte(reproduced_events_repo, tmp_path):
    repo = reproduced_events_repo
    training = read_table(repo / "data" / "features" / "customers.parquet")
    last = sorted(training["snapshot_date"].unique())[-1]
    python_module("stages.predict", "--as-of", last, "--events", "data/raw/events", "--output",
                  tmp_path / "scores.csv", "--features-output", tmp_path / "scored.parquet", cwd=repo)
    scored = read_table(tmp_path / "scored.parquet")
    expected = training[training["snapshot_date"] == last].drop(columns=["purchased"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(scored, expected, check_exact=True)

    def digest(frame):
        return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()

    assert digest(scored) == digest(expected)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == len(expected) and set(scores["customer_id"]) == set(expected["customer_id"])


@pytest.mark.e2e
def test_the_event_built_model_beats_both_baselines_and_knows_its_ideal(reproduced_events_repo):
    import json

    metrics = json.loads((reproduced_events_repo / "metrics" / "metrics.json").read_text())
    assert "ideal" in metrics, "the event-built table's true probabilities did not join"
    assert set(metrics["periods"]) == {"2025-04-30"}
    assert FROM_EVENTS["data.path"] == "data/features/customers.parquet"


@pytest.mark.dask
def test_both_engines_build_the_same_table_from_customers_in_several_files(tmp_path):
    """The Dask engine builds each customers file's rows on a worker, from that part's own events: the same
    rows and bits as the local engine, in the same order."""
    from stages.lib.core.params import parse_params
    from stages.lib.engines.local.engine import LocalEngine
    from stages.lib.features.build import build_part
    from tests.helpers import local_dask_engine

    events = _event_tables(tmp_path / "events", customers=300)
    customers = read_table(events / "customers.parquet")
    (events / "customers.parquet").unlink()
    (events / "customers").mkdir()
    for number, (start, stop) in enumerate(((0, 120), (120, 121), (121, 300))):
        write_table(customers.iloc[start:stop], events / "customers" / f"part-{number:05d}.parquet")
    features = parse_params(edited_params({"features.snapshots": SNAPSHOTS})).features
    shared = (str(events.resolve()), features, SNAPSHOTS, True)
    LocalEngine(1).write(build_part, events / "customers", [tmp_path / "local.parquet"], *shared)
    with local_dask_engine(processes=False) as engine:
        engine.write(build_part, events / "customers", [tmp_path / "dask"], *shared)
    local, dask = read_table(tmp_path / "local.parquet"), read_table(tmp_path / "dask")
    assert len(local) > 0
    pd.testing.assert_frame_equal(local, dask, check_exact=True)
