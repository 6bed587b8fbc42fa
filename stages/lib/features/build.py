"""The features stage's work on a part of the customers, and what it tells the user.

`build_part` is the one function from event tables to the customer x snapshot
table: the features stage maps it over the customers table's partitions (on
either engine: each part reads only its own customers' events, and a customer's
values come from its events alone), and `stages.predict --as-of` calls it on all
customers at one date, without the label.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError
from stages.lib.core.files import write_json
from stages.lib.core.params_features import FeaturesParams
from stages.lib.core.tables import read_table
from stages.lib.data.dates import date_label, parse_dates
from stages.lib.features.as_of import features_as_of
from stages.lib.features.event_tables import (
    EventTable,
    read_events,
    require_columns,
    require_present,
    table_keys,
    table_path,
)


@dataclass(frozen=True)
class PartSummary:
    rows: int
    buyers: int
    events: dict[str, int]
    first_event: int | None   # ns since 1970, the earliest event of any table; None: no events


def customers_of(part: pd.DataFrame, offset: int, features: FeaturesParams, source: str
                 ) -> tuple[pd.DataFrame, np.ndarray | None]:
    """A part of the customers table, checked, with the ID first; and its join dates (ns since 1970)."""
    keys = {features.id_column: "features.id_column", features.joined_column: "features.joined_column"}
    require_present(source, part.columns, [c for c in keys if c], keys)
    repeated = part[features.id_column].duplicated().to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise DataError(f"{source}: customer {part[features.id_column].iloc[row]!r} appears twice (data row "
                        f"{offset + row + 1:,}); the customers table holds one row per customer")
    joined = None
    if features.joined_column:
        joined = parse_dates(part[features.joined_column], features.joined_column, offset, source,
                             key="features.joined_column", needs="the date the customer joined").astype(np.int64)
    ordered = [features.id_column] + [c for c in part.columns if c not in (features.id_column, features.joined_column)]
    return part[ordered], joined


def build_part(part: pd.DataFrame, offset: int, events: str, features: FeaturesParams, cutoffs: list[str],
               with_label: bool) -> tuple[list[pd.DataFrame], PartSummary]:
    """The customer x snapshot rows of a part of the customers table at every cutoff in `cutoffs` (ISO dates),
    built from the part's own events in the tables of directory `events`."""
    source = str(table_path(events, features.customers))
    customers, joined = customers_of(part, offset, features, source)
    counts: dict[str, int] = {}
    firsts: list[int] = []

    def read(name: str) -> EventTable:
        # Called by features_as_of when it gets to the table, so one table's events are in memory at a time.
        table = read_events(events, name, features, customers[features.id_column])
        counts[name] = len(table.time)
        firsts.extend([int(table.time.min())] if len(table.time) else [])
        return table

    # The largest table first (by its files' size), the least memory at once (features_as_of).
    largest_first = sorted(features.tables, key=lambda name: -files_size(table_path(events, name)))
    frame = features_as_of(customers, joined, {name: functools.partial(read, name) for name in largest_first},
                           [pd.Timestamp(c) for c in cutoffs], features, with_label)
    counts = {name: counts[name] for name in features.tables if name in counts}
    first = min(firsts) if firsts else None
    buyers = int(frame[features.label_column].sum()) if with_label else 0
    return [frame], PartSummary(len(frame), buyers, counts, first)


def files_size(path: Path) -> int:
    """Bytes of a table's file, or of the files of its directory."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def check_inputs(events: str, features: FeaturesParams, cutoffs: list[str]) -> dict[str, int]:
    """Every table's columns, the join dates and that someone joined before the last cutoff, checked before
    any work (so a bad input stops with nothing written); returns per event table its events of customers the
    customers table does not hold."""
    path = table_path(events, features.customers)
    keys = {features.id_column: "features.id_column", features.joined_column: "features.joined_column"}
    require_columns(path, [c for c in (features.id_column, features.joined_column) if c], keys)
    customers = read_table(path, [c for c in (features.id_column, features.joined_column) if c])
    _, joined = customers_of(customers, 0, features, str(path))
    if joined is not None and not (joined < pd.Timestamp(cutoffs[-1]).value).any():
        raise DataError(f"{path}: no customer joined before the last snapshot ({cutoffs[-1]}); move "
                        "features.snapshots later or check features.joined_column")
    ids = pd.Index(customers[features.id_column])
    unknown = {}
    for name in features.tables:
        table_file = table_path(events, name)
        keys = table_keys(name, features)
        require_columns(table_file, list(keys), keys)
        named = read_table(table_file, [features.id_column])[features.id_column]
        unknown[name] = int((ids.get_indexer(named) < 0).sum())
    return unknown


def report_lines(summaries: list[PartSummary], unknown: dict[str, int], cutoffs: list[str],
                 features: FeaturesParams) -> tuple[str, list[str]]:
    """(the stage's summary line, its warning lines)."""
    rows, buyers = sum(s.rows for s in summaries), sum(s.buyers for s in summaries)
    events = {name: sum(s.events[name] for s in summaries) for name in features.tables}
    firsts = [s.first_event for s in summaries if s.first_event is not None]
    warnings = [f"warning: features: {count:,} {name} event(s) name customers the customers table does not hold; "
                "they are left out (add those customers, or check features.id_column)"
                for name, count in unknown.items() if count]
    early = [c for c in cutoffs if not firsts or pd.Timestamp(c).value <= min(firsts)]
    if early:
        since = f"the first event is {date_label(min(firsts))}" if firsts else "there are no events"
        warnings.append(f"warning: features: snapshot(s) {', '.join(early)} come before any event ({since}): their "
                        "rows have no history; move features.snapshots later")
    line = (f"features: {rows:,} rows ({len(cutoffs)} snapshots, {cutoffs[0]} to {cutoffs[-1]}) from "
            f"{', '.join(f'{count:,} {name}' for name, count in events.items())}; "
            f"label {features.label_column}: {buyers:,} buyers ({buyers / rows:.2%})")
    return line, warnings


def write_spec(features: FeaturesParams, path: str | Path) -> None:
    """The features' definition, saved beside the model so scoring builds the features training used."""
    write_json(features.model_dump(mode="json"), path)
