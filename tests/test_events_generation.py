"""generate_events: deterministic event tables, no event before a customer joined, orders only in label windows,
the truth for every customer joined before a cutoff, and a purchase rate at the asked one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages import generate_events as stage
from stages.lib.core.errors import ParamsError
from stages.lib.core.exact import round_significant_bits
from stages.lib.core.params_sections import GenerateParams
from stages.lib.data.behaviour import ID_COLUMN, PROBABILITY_COLUMN, SNAPSHOT_COLUMN
from stages.lib.data.events import (
    CUSTOMERS_TABLE,
    EVENT_TABLES,
    HISTORY_MONTHS,
    event_cutoffs,
    generate_events,
    labels_of,
)
from stages.lib.data.snapshots import FIRST_SNAPSHOT
from tests.helpers import edited_params, write_params

ROWS, SNAPSHOTS, RATE, WINDOW = 3000, 4, 0.04, 28
PARAMS = GenerateParams(rows=ROWS, snapshots=SNAPSHOTS, purchase_rate=RATE)
COLUMNS = {
    "customers": {ID_COLUMN: "int64", "joined_on": "datetime64[ns]", "age": "float64", "gender": "text",
                  "region": "text", "income_band": "text", "household_size": "int64"},
    "orders": {ID_COLUMN: "int64", "ordered_at": "datetime64[ns]", "amount": "float64"},
    "sessions": {ID_COLUMN: "int64", "started_at": "datetime64[ns]", "pages": "int64", "minutes": "float64",
                 "basket_adds": "int64", "saw_checkout": "int8"},
}
TIME_COLUMNS = {"orders": "ordered_at", "sessions": "started_at"}


@pytest.fixture(scope="module")
def generated():
    return generate_events(PARAMS, WINDOW, seed=7)


def test_same_seed_gives_identical_tables(generated):
    tables, truth = generated
    again, again_truth = generate_events(PARAMS, WINDOW, seed=7)
    assert set(again) == set(tables) == {CUSTOMERS_TABLE, *EVENT_TABLES}
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, again[name])
    pd.testing.assert_frame_equal(truth, again_truth)


def test_another_seed_gives_other_tables(generated):
    tables, truth = generated
    other, other_truth = generate_events(PARAMS, WINDOW, seed=8)
    for name, frame in tables.items():
        assert list(other[name].columns) == list(frame.columns)
        assert not other[name].equals(frame)
    assert not other_truth[PROBABILITY_COLUMN].equals(truth[PROBABILITY_COLUMN])


@pytest.mark.parametrize("name", list(COLUMNS))
def test_columns_and_dtypes(generated, name):
    frame = generated[0][name]
    assert list(frame.columns) == list(COLUMNS[name])
    for column, dtype in COLUMNS[name].items():
        if dtype == "text":
            assert pd.api.types.is_string_dtype(frame[column]) and not pd.api.types.is_numeric_dtype(frame[column])
        else:
            assert frame[column].dtype == np.dtype(dtype), (column, frame[column].dtype)
    assert len(frame) > 0


def test_customers_are_unique_not_in_order_and_have_gaps(generated):
    customers = generated[0]["customers"]
    ids = customers[ID_COLUMN]
    assert ids.is_unique and ids.notna().all()
    assert not ids.is_monotonic_increasing
    assert (customers["joined_on"] == customers["joined_on"].dt.normalize()).all()   # midnight
    assert customers["joined_on"].max() < pd.Timestamp(event_cutoffs(SNAPSHOTS)[-2])
    for column, rate in (("age", 0.03), ("gender", 0.05), ("income_band", 0.12)):
        assert customers[column].isna().mean() == pytest.approx(rate, abs=0.03), column
    for column in ("region", "household_size", "joined_on"):
        assert customers[column].notna().all()


def test_event_values(generated):
    tables = generated[0]
    orders, sessions = tables["orders"], tables["sessions"]
    assert (orders["amount"] > 0).all()
    assert np.array_equal(orders["amount"], orders["amount"].round(2))
    assert (sessions["pages"] >= 1).all() and (sessions["basket_adds"] >= 0).all()
    assert set(sessions["saw_checkout"].unique()) == {0, 1}
    assert np.array_equal(sessions["minutes"], sessions["minutes"].round(1)) and (sessions["minutes"] >= 0).all()
    for name, column in TIME_COLUMNS.items():
        times = tables[name][column]
        assert (times == times.dt.floor("s")).all(), name      # whole seconds
        assert set(tables[name][ID_COLUMN]) <= set(tables["customers"][ID_COLUMN])


def test_sessions_per_customer_month(generated):
    tables = generated[0]
    cutoffs = event_cutoffs(SNAPSHOTS)
    start = tables["customers"]["joined_on"].clip(lower=cutoffs[0])
    months = ((cutoffs[-1] - start).dt.total_seconds() / 86400 / 30.44).sum()
    assert 2 <= len(tables["sessions"]) / months <= 4


def test_no_event_before_its_customer_joined(generated):
    tables = generated[0]
    joined = tables["customers"].set_index(ID_COLUMN)["joined_on"]
    cutoffs = event_cutoffs(SNAPSHOTS)
    for name, column in TIME_COLUMNS.items():
        events = tables[name]
        assert (events[column] >= events[ID_COLUMN].map(joined)).all(), name
        assert events[column].min() >= cutoffs[0] and events[column].max() < cutoffs[-1], name
    # Many joined during the history, so have less of it.
    in_history = tables["customers"]["joined_on"].between(cutoffs[0], cutoffs[HISTORY_MONTHS], inclusive="left")
    assert in_history.mean() > 0.05


def test_truth_has_every_customer_joined_before_each_cutoff(generated):
    tables, truth = generated
    customers = tables["customers"]
    dates = pd.date_range(FIRST_SNAPSHOT, periods=SNAPSHOTS, freq="ME").strftime("%Y-%m-%d").tolist()
    assert list(truth.columns) == [ID_COLUMN, SNAPSHOT_COLUMN, PROBABILITY_COLUMN]
    assert pd.api.types.is_string_dtype(truth[SNAPSHOT_COLUMN])
    assert sorted(truth[SNAPSHOT_COLUMN].unique()) == dates
    assert not truth.duplicated([ID_COLUMN, SNAPSHOT_COLUMN]).any()
    for date in dates:
        expected = customers.loc[customers["joined_on"] < pd.Timestamp(date), ID_COLUMN]
        assert set(truth.loc[truth[SNAPSHOT_COLUMN] == date, ID_COLUMN]) == set(expected), date
    # About generate.rows customer x snapshot rows; new customers join every month.
    assert len(truth) == pytest.approx(ROWS, rel=0.03)
    counts = truth[SNAPSHOT_COLUMN].value_counts().sort_index()
    assert counts.is_monotonic_increasing and counts.iloc[-1] > counts.iloc[0]
    probability = truth[PROBABILITY_COLUMN].to_numpy()
    assert ((probability > 0) & (probability < 1)).all()
    assert np.array_equal(probability, round_significant_bits(probability))


@pytest.mark.parametrize("window", [WINDOW, 10])
def test_orders_only_inside_label_windows(window):
    tables, _ = generate_events(PARAMS, window, seed=3)
    ordered_at = tables["orders"]["ordered_at"]
    cutoffs = event_cutoffs(SNAPSHOTS)[:-1]   # every monthly cutoff, the history's included
    window_of = np.searchsorted(cutoffs.to_numpy(), ordered_at.to_numpy(), side="right") - 1
    assert (window_of >= 0).all()
    assert (ordered_at.to_numpy() < cutoffs.to_numpy()[window_of] + np.timedelta64(window, "D")).all()
    assert len(np.unique(window_of)) == len(cutoffs)     # the history's windows have orders too


@pytest.mark.parametrize("truth_kind", ["nonlinear", "linear"])
def test_label_rate_follows_the_param(truth_kind):
    rate = 0.05
    params = GenerateParams(rows=40000, snapshots=3, purchase_rate=rate, truth=truth_kind)
    tables, truth = generate_events(params, WINDOW, seed=5)
    labels = labels_of(tables["orders"], truth, WINDOW)
    by_date = pd.Series(labels).groupby(truth[SNAPSHOT_COLUMN]).mean()
    # The intercept is solved per cutoff, so each snapshot's mean true probability is the rate; its
    # labels scatter around it with a standard deviation of sqrt(rate (1 - rate) / rows) < 0.0022.
    assert truth.groupby(SNAPSHOT_COLUMN)[PROBABILITY_COLUMN].mean().to_numpy() == pytest.approx(rate, abs=1e-4)
    assert by_date.to_numpy() == pytest.approx(rate, abs=0.009)
    # The probability is the label's: buyers have the higher ones.
    probability = truth[PROBABILITY_COLUMN]
    assert probability[labels == 1].mean() > 2 * probability[labels == 0].mean()


@pytest.mark.parametrize("window", [0, 29, 31])
def test_a_label_window_longer_than_a_month_is_refused(window):
    with pytest.raises(ParamsError, match="features.label_window_days"):
        generate_events(PARAMS, window, seed=7)


def test_one_snapshot():
    tables, truth = generate_events(GenerateParams(rows=500, snapshots=1, purchase_rate=RATE), WINDOW, seed=1)
    assert truth[SNAPSHOT_COLUMN].unique().tolist() == [FIRST_SNAPSHOT]
    assert len(truth) == len(tables["customers"]) == 500


def test_stage_writes_the_tables_and_the_truth(tmp_path, capsys):
    params = write_params(edited_params({"generate.rows": ROWS, "generate.snapshots": 3}), tmp_path / "params.yaml")
    output, truth_path = tmp_path / "events", tmp_path / "truth.parquet"
    stage.main(["--params", str(params), "--output", str(output), "--probabilities", str(truth_path)])
    for name in (CUSTOMERS_TABLE, *EVENT_TABLES):
        frame = pd.read_parquet(output / f"{name}.parquet")
        assert list(frame.columns) == list(COLUMNS[name])
    truth = pd.read_parquet(truth_path)
    assert len(truth) == pytest.approx(ROWS, rel=0.03)
    line = capsys.readouterr().out.strip()
    assert line.startswith("generate_events: ") and "customers" in line and "over 3 snapshots" in line
