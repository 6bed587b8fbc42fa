"""Features from event tables: what each value means, and proofs that no feature sees its future.

The proofs poison the future (events at or after a cutoff moved, added, removed or
changed) and check that no feature of that snapshot, and no training row, moves;
the values themselves are checked against a direct count over the events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import ParamsError
from stages.lib.core.params import parse_params
from stages.lib.core.params_features import FeaturesParams
from stages.lib.core.tables import write_table
from stages.lib.features.as_of import DAY_NS, features_as_of
from stages.lib.features.build import build_part
from stages.lib.features.event_tables import EventTable, summable_values
from tests.helpers import edited_params

SPEC = FeaturesParams(
    tables={"orders": {"timestamp": "ordered_at", "sums": ["amount"], "means": ["amount"]},
            "sessions": {"timestamp": "started_at", "sums": ["pages"]}},
    snapshots=["2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30"], windows=[7, 30, 365])
CUTOFFS = [pd.Timestamp(date) for date in SPEC.snapshots]
START = pd.Timestamp("2024-01-01").value


def _events(seed: int = 0, customers: int = 300, events: int = 6000) -> tuple[pd.DataFrame, np.ndarray,
                                                                             dict[str, EventTable]]:
    """Random customers (some never active) and events, with ties in time and events right at the cutoffs."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"customer_id": rng.permutation(customers) + 1000,
                          "age": rng.integers(18, 80, customers).astype(float)})
    joined = START + rng.integers(0, 480, customers) * DAY_NS
    active = np.flatnonzero(rng.random(customers) < 0.8)

    def one(name: str, columns: list[str]) -> EventTable:
        time = START + rng.integers(0, 500 * 86_400, events) * 10**9
        time[: events // 20] = rng.choice([c.value for c in CUTOFFS], events // 20)   # exactly at a cutoff
        time[events // 20: events // 10] = time[: events // 20] - 10**9                 # a second before it
        values = {column: rng.gamma(2.0, 30.0, events).round(2) for column in columns}
        return EventTable(name, rng.choice(active, events), time.astype(np.int64), values)

    return table, joined.astype(np.int64), {"orders": one("orders", ["amount"]), "sessions": one("sessions", ["pages"])}


def _direct(customers: pd.DataFrame, joined: np.ndarray, tables: dict[str, EventTable]) -> pd.DataFrame:
    """The same table counted directly, customer by customer (slow, obvious)."""
    rows = []
    for cutoff in CUTOFFS:
        cut = cutoff.value
        for position in np.flatnonzero(joined < cut):
            row = {"customer_id": customers["customer_id"].iloc[position], "snapshot_date": f"{cutoff:%Y-%m-%d}",
                   "tenure_days": (cut - joined[position]) / DAY_NS}
            for name, table in tables.items():
                mine = table.customer == position
                for days in SPEC.windows:
                    inside = mine & (table.time >= cut - days * DAY_NS) & (table.time < cut)
                    row[f"{name}_count_{days}d"] = int(inside.sum())
                    for column in SPEC.tables[name].sums:
                        row[f"{name}_{column}_sum_{days}d"] = float(table.values[column][inside].sum())
                    for column in SPEC.tables[name].means:
                        row[f"{name}_{column}_mean_{days}d"] = (float(table.values[column][inside].mean())
                                                                 if inside.any() else np.nan)
                before = table.time[mine & (table.time < cut)]
                row[f"days_since_last_{name}"] = (cut - before.max()) / DAY_NS if len(before) else np.nan
                row[f"no_{name}_yet"] = int(len(before) == 0)
            label = tables["orders"]
            row["purchased"] = int(((label.customer == position) & (label.time >= cut)
                                    & (label.time < cut + SPEC.label_window_days * DAY_NS)).any())
            rows.append(row)
    return pd.DataFrame(rows)


def _truncated(tables: dict[str, EventTable], keep) -> dict[str, EventTable]:
    out = {}
    for name, table in tables.items():
        kept = keep(table)
        out[name] = EventTable(name, table.customer[kept], table.time[kept],
                               {column: values[kept] for column, values in table.values.items()})
    return out


def _features(table: pd.DataFrame) -> pd.DataFrame:
    """A built table without its label: what a model sees."""
    return table.drop(columns=["purchased"])


def test_every_value_is_the_direct_count_over_the_events_before_the_cutoff():
    customers, joined, tables = _events()
    built = features_as_of(customers, joined, tables, CUTOFFS, SPEC, with_label=True)
    direct = _direct(customers, joined, tables)
    shared = [column for column in direct.columns]
    assert list(built.columns) == ["customer_id", "snapshot_date", "age"] + shared[2:]
    merged = built.merge(direct, on=["customer_id", "snapshot_date"], suffixes=("", "_direct"))
    assert len(merged) == len(built) == len(direct)
    for column in shared[2:]:
        np.testing.assert_allclose(merged[column].to_numpy(float), merged[f"{column}_direct"].to_numpy(float),
                                   rtol=1e-12, atol=1e-9, err_msg=column)
    # Customers without events get defined values: zero counts and sums, missing recency with its indicator.
    quiet = built[built["no_sessions_yet"] == 1]
    assert len(quiet) and (quiet["sessions_count_365d"] == 0).all() and quiet["days_since_last_sessions"].isna().all()
    assert (quiet["sessions_pages_sum_365d"] == 0).all()
    # Only customers who had joined by each cutoff have a row.
    assert (built["tenure_days"] > 0).all()


def test_events_at_or_after_a_cutoff_change_no_feature_of_that_snapshot():
    customers, joined, tables = _events()
    for cutoff in CUTOFFS:
        cut = cutoff.value
        whole = features_as_of(customers, joined, tables, [cutoff], SPEC, with_label=False)
        before = features_as_of(customers, joined, _truncated(tables, lambda t, cut=cut: t.time < cut), [cutoff], SPEC,
                                with_label=False)
        # Poisoned: every later event moved, its value changed, and as many again added after the cutoff.
        rng = np.random.default_rng(cut % 1000)
        poisoned = {}
        for name, table in tables.items():
            later = table.time >= cut
            time = np.where(later, cut + rng.integers(0, 400 * 86_400, len(later)) * 10**9, table.time)
            values = {c: np.where(later, v * 7 + 3, v) for c, v in table.values.items()}
            extra = rng.integers(0, len(customers), 2000)
            poisoned[name] = EventTable(name, np.concatenate([table.customer, extra]),
                                        np.concatenate([time, cut + rng.integers(0, 30 * 86_400, 2000) * 10**9]),
                                        {c: np.concatenate([v, rng.random(2000) * 1e6]) for c, v in values.items()})
        after = features_as_of(customers, joined, poisoned, [cutoff], SPEC, with_label=False)
        pd.testing.assert_frame_equal(whole, before, check_exact=True)
        pd.testing.assert_frame_equal(whole, after, check_exact=True)


def test_the_label_counts_only_purchases_in_its_window_after_every_feature_window():
    customers, joined, tables = _events()
    built = features_as_of(customers, joined, tables, CUTOFFS, SPEC, with_label=True)
    for cutoff in CUTOFFS:
        cut, end = cutoff.value, cutoff.value + SPEC.label_window_days * DAY_NS
        # The label's events, alone, leave every feature of the snapshot as it was ...
        rows = built["snapshot_date"] == f"{cutoff:%Y-%m-%d}"
        outside = _truncated(tables, lambda t, cut=cut, end=end: (t.time < cut) | (t.time >= end))
        without = features_as_of(customers, joined, outside, [cutoff], SPEC, with_label=True)
        pd.testing.assert_frame_equal(_features(built[rows].reset_index(drop=True)), _features(without),
                                      check_exact=True)
        # ... and are all the label sees: with them gone, nobody bought.
        assert without["purchased"].sum() == 0 and built.loc[rows, "purchased"].sum() > 0
    # The longest window a label may have ends at the next snapshot (checked with the params).
    gaps = [(b - a).days for a, b in zip(CUTOFFS, CUTOFFS[1:])]
    assert SPEC.label_window_days <= min(gaps)


def test_a_label_window_longer_than_the_gap_between_snapshots_is_refused():
    raw = edited_params({"features.snapshots": ["2025-01-31", "2025-02-28"], "features.label_window_days": 30})
    with pytest.raises(ParamsError, match=r"features.label_window_days \(30\) is longer than the 28 days"):
        parse_params(raw)
    parse_params(edited_params({"features.snapshots": ["2025-01-31", "2025-02-28"],
                                "features.label_window_days": 28}))


def test_the_test_periods_events_never_reach_a_training_row():
    """With the last snapshot the test split, changing every event from its cutoff on leaves every training
    row (features and label) as it was: labels are known by the next snapshot."""
    customers, joined, tables = _events()
    test_cut = CUTOFFS[-1].value
    built = features_as_of(customers, joined, tables, CUTOFFS, SPEC, with_label=True)
    future_free = features_as_of(customers, joined, _truncated(tables, lambda t: t.time < test_cut), CUTOFFS,
                                 SPEC, with_label=True)
    training = built["snapshot_date"] < f"{CUTOFFS[-1]:%Y-%m-%d}"
    pd.testing.assert_frame_equal(built[training], future_free[training], check_exact=True)


def test_a_part_of_the_customers_gets_the_same_bits_as_all_of_them(tmp_path):
    """What lets an engine cut the customers into partitions: a customer's values come from its own events."""
    customers, joined, tables = _events(seed=3)
    events = tmp_path / "events"
    events.mkdir()
    ids = customers["customer_id"].to_numpy()
    write_table(customers.assign(joined_on=pd.to_datetime(joined)), events / "customers.parquet")
    for name, table in tables.items():
        spec = SPEC.tables[name]
        write_table(pd.DataFrame({"customer_id": ids[table.customer], spec.timestamp: pd.to_datetime(table.time),
                                  **table.values}), events / f"{name}.parquet")
    cutoffs = [f"{c:%Y-%m-%d}" for c in CUTOFFS]
    frame = customers.assign(joined_on=pd.to_datetime(joined))
    [whole], summary = build_part(frame, 0, str(events), SPEC, cutoffs, True)
    pieces = [build_part(frame.iloc[a:b], a, str(events), SPEC, cutoffs, True)[0][0]
              for a, b in ((0, 100), (100, 101), (101, len(frame)))]
    joined_parts = pd.concat(pieces).sort_values(["snapshot_date", "customer_id"], kind="stable")
    expected = whole.sort_values(["snapshot_date", "customer_id"], kind="stable")
    pd.testing.assert_frame_equal(joined_parts.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=True)
    assert summary.rows == len(whole) and summary.buyers == whole["purchased"].sum()


def test_a_part_reads_only_its_range_of_customers_from_event_files_sorted_by_customer(tmp_path, monkeypatch):
    """Event tables unloaded as files sorted by customer (how a cluster's parts each read their own events):
    every read of a part returns only IDs in the part's range, and the parts' rows are the whole table's bits."""
    customers, joined, tables = _events(seed=4)
    frame = customers.assign(joined_on=pd.to_datetime(joined)).sort_values("customer_id", ignore_index=True)
    events = tmp_path / "events"
    (events / "orders").mkdir(parents=True)
    (events / "sessions").mkdir()
    write_table(frame, events / "customers.parquet")
    ids = customers["customer_id"].to_numpy()
    for name, table in tables.items():
        rows = pd.DataFrame({"customer_id": ids[table.customer], SPEC.tables[name].timestamp: pd.to_datetime(
            table.time), **table.values}).sort_values("customer_id", kind="stable", ignore_index=True)
        for number, chunk in enumerate(np.array_split(np.arange(len(rows)), 4)):
            write_table(rows.iloc[chunk], events / name / f"part-{number:05d}.parquet")
    cutoffs = [f"{c:%Y-%m-%d}" for c in CUTOFFS]
    [whole], _ = build_part(frame, 0, str(events), SPEC, cutoffs, True)
    read_parquet, seen = pd.read_parquet, []

    def spied(*args, **kwargs):
        table = read_parquet(*args, **kwargs)
        seen.extend(table["customer_id"].tolist() if "customer_id" in table.columns else [])
        return table
    monkeypatch.setattr(pd, "read_parquet", spied)
    pieces = []
    for a, b in ((0, 100), (100, 101), (101, len(frame))):
        seen.clear()
        pieces.append(build_part(frame.iloc[a:b], a, str(events), SPEC, cutoffs, True)[0][0])
        part_ids = frame["customer_id"].iloc[a:b]
        assert seen and part_ids.min() <= min(seen) and max(seen) <= part_ids.max()
    joined_parts = pd.concat(pieces).sort_values(["snapshot_date", "customer_id"], kind="stable")
    expected = whole.sort_values(["snapshot_date", "customer_id"], kind="stable")
    pd.testing.assert_frame_equal(joined_parts.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=True)


def test_whole_number_columns_are_held_narrow_and_sum_to_the_same_bits_as_float64():
    """Counts (pages, flags) are kept in one or two bytes, not eight; their sums and means are float64's to
    the bit, and a column that could outgrow exact float64 sums, or has gaps, stays float64."""
    rng = np.random.default_rng(5)
    assert summable_values(pd.Series(rng.integers(0, 40, 100))).dtype == np.uint8
    assert summable_values(pd.Series(rng.integers(-300, 300, 100))).dtype == np.int16
    assert summable_values(pd.Series(rng.random(100) < 0.3)).dtype == np.int8
    assert summable_values(pd.Series([1.0, np.nan, 3.0])).tolist() == [1.0, 0.0, 3.0]
    assert summable_values(pd.Series([2**52, 1, 2], dtype=np.int64)).dtype == np.float64
    assert summable_values(pd.Series(pd.array([1, None, 3], dtype="Int64"))).tolist() == [1.0, 0.0, 3.0]

    customers, joined, tables = _events(seed=7)
    spec = FeaturesParams(**{**SPEC.model_dump(), "tables": {
        "orders": {"timestamp": "ordered_at", "sums": ["amount"], "means": ["amount"]},
        "sessions": {"timestamp": "started_at", "sums": ["pages", "checkout"], "means": ["pages"]}}})
    sessions = tables["sessions"]
    pages = rng.integers(0, 60, len(sessions.time))
    checkout = rng.random(len(sessions.time)) < 0.1

    def with_values(pages_values, checkout_values) -> dict[str, EventTable]:
        return {**tables, "sessions": EventTable("sessions", sessions.customer, sessions.time,
                                                 {"pages": pages_values, "checkout": checkout_values})}

    narrow = with_values(summable_values(pd.Series(pages)), summable_values(pd.Series(checkout)))
    assert narrow["sessions"].values["pages"].dtype == np.uint8
    wide = with_values(pages.astype(np.float64), checkout.astype(np.float64))
    pd.testing.assert_frame_equal(features_as_of(customers, joined, narrow, CUTOFFS, spec, with_label=True),
                                  features_as_of(customers, joined, wide, CUTOFFS, spec, with_label=True),
                                  check_exact=True)
