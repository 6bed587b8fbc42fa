"""Check the customer table, split it, and fit the preprocessor on the training split only.

One algorithm on every engine, partition by partition (stages.lib.engines.base.Engine):

1. the table's facts, added up over partitions, are checked (stages.lib.data.schema);
   each repeated customer ID keeps its first row, so no customer is on both sides;
2. the split: with data.time_column, by snapshot date (stages.lib.data.dates: the
   latest dates test, the rest train); without, stratified by seeded keys
   (stages.lib.data.sampling): of each class, the round(test_size x its rows)
   customers with the smallest keys are held out;
3. the preprocessor (stages.lib.data.preprocessor) is fitted on the training rows'
   statistics added up over partitions: level counts, gaps, and exact medians
   and deciles (the drift reference's bins, stages.lib.data.drift) from histograms
   of the numbers' bits;
4. each partition is transformed and written, training and test rows in input order.

The local engine runs this on its one partition, the Dask engine on each file
without any process holding the table; both write the same rows and fit the same
preprocessor, however the table is cut into files.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError
from stages.lib.core.params_sections import DataParams, PreprocessParams
from stages.lib.data import dates, quantiles, sampling
from stages.lib.data.facts import TableFacts
from stages.lib.data.preprocessor import CustomerPreprocessor, category_counts
from stages.lib.data.schema import LABEL, SNAPSHOT, check_table_facts, positive_key_of, target_labels
from stages.lib.engines.base import Engine, Table


@dataclass(frozen=True)
class SplitPlan:
    """Everything a partition needs to know to split itself as the whole table is split."""

    data: DataParams
    positive: str                      # the checked target's key for data.positive_label
    seed: int
    repeated: np.ndarray               # numbers of the rows dropped as repeats of an earlier row's IDs (and date)
    source: str
    cutoffs: sampling.Cutoffs | None = None   # random split: of each class, the largest split key held out
    periods: dates.PeriodSplit | None = None  # dated table: the snapshot dates of each side


@dataclass(frozen=True)
class SplitCounts:
    train_rows: int
    train_buyers: int
    test_rows: int
    left_out_rows: int = 0   # in data.gap_periods' dates


def _facts(frame: pd.DataFrame, offset: int, data: DataParams) -> TableFacts:
    # Repeated IDs across partitions are found by the engine (Engine.repeated_rows), not counted here.
    return TableFacts.of(frame, data, count_duplicates=False)


def _labelled(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """A partition without its repeated rows, with its 0/1 labels and its snapshot dates (None: undated)."""
    column = plan.data.time_column
    when = dates.parse_dates(frame[column], column, offset, plan.source) if column is not None else None
    if len(plan.repeated):
        keep = ~np.isin(np.arange(offset, offset + len(frame)), plan.repeated)
        frame, when = frame[keep], (when[keep] if when is not None else None)
    return frame, target_labels(frame[plan.data.target], plan.positive), when


def _keys(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> np.ndarray:
    """The random split's keys of a partition's rows (its repeated rows dropped)."""
    keys = sampling.split_keys(frame, offset, plan.data.id_columns, plan.seed)
    return keys[~np.isin(np.arange(offset, offset + len(frame)), plan.repeated)] if len(plan.repeated) else keys


def _sides(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray,
                                                                       np.ndarray | None]:
    """A partition's rows, labels, each row's side (0 training, 1 test, -1 left out) and dates."""
    frame, labels, when = _labelled(frame, offset, plan)
    if plan.periods is not None:
        return frame, labels, plan.periods.side(when), when
    return frame, labels, sampling.kept(_keys(frame, offset, plan), labels, plan.cutoffs).astype(np.int8), when


def _period_counts(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> dates.Periods:
    _, labels, when = _labelled(frame, offset, plan)
    return dates.period_counts(when, labels)


def _split_bins(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> dict[int, np.ndarray]:
    _, labels, _ = _labelled(frame, offset, plan)
    return sampling.key_bins(_keys(frame, offset, plan), labels)


def _split_keys_in_bins(frame: pd.DataFrame, offset: int, plan: SplitPlan, bins) -> dict[int, np.ndarray]:
    _, labels, _ = _labelled(frame, offset, plan)
    return sampling.keys_in_bins(_keys(frame, offset, plan), labels, bins)


def _training_statistics(frame: pd.DataFrame, offset: int, plan: SplitPlan, preprocessor: CustomerPreprocessor,
                         high_bins: dict[str, list[int]] | None = None) -> dict:
    """What the preprocessor is fitted on, for one partition's training rows, in a form partitions add up:
    numeric gaps, level counts and the medians' bit histograms (high halves; with `high_bins`, the low
    halves of the values in those bins)."""
    frame, _, side, _ = _sides(frame, offset, plan)
    train = frame[side == 0]
    numeric = preprocessor.numeric_block(train, "training data")
    histograms = {}
    for column in preprocessor.numeric_columns:
        keys = quantiles.sortable_bits(numeric[column].dropna().to_numpy(np.float32))
        if high_bins is None:
            histograms[column] = quantiles.bin_counts(keys >> np.uint32(quantiles.HALF_BITS))
        else:
            for high in high_bins[column]:
                inside = keys[(keys >> np.uint32(quantiles.HALF_BITS)) == high]
                histograms[(column, high)] = quantiles.bin_counts(inside & np.uint32(quantiles.LOW_MASK))
    if high_bins is not None:
        return {"histograms": histograms}
    return {
        "gaps": numeric.isna().any().to_dict(),
        "levels": {c: category_counts(train[c]) for c in preprocessor.categorical_columns},
        "histograms": histograms,
    }


def _added(pieces: list[dict]) -> dict:
    """Partitions' statistics as one."""
    first = pieces[0]
    added = {"histograms": {key: quantiles.sum_counts([p["histograms"][key] for p in pieces])
                            for key in first["histograms"]}}
    if "gaps" in first:
        added["gaps"] = {c: any(p["gaps"][c] for p in pieces) for c in first["gaps"]}
        added["levels"] = {c: quantiles.sum_counts([p["levels"][c] for p in pieces]) for c in first["levels"]}
    return added


def plan_split(engine: Engine, table: Table, data: DataParams, preprocess: PreprocessParams,
               seed: int, source: str) -> tuple[SplitPlan, CustomerPreprocessor]:
    """Check the table, choose the test customers and fit the preprocessor on the training rows."""
    facts = engine.map(_facts, table, data)
    header = facts[0].header
    repeated = np.empty(0, dtype=np.int64)
    keys = list(data.id_columns) + ([data.time_column] if data.time_column is not None else [])
    if data.id_columns and set(keys) <= set(header.columns):
        repeated = engine.repeated_rows(table, keys)
    schema = check_table_facts(TableFacts.combine(facts, len(repeated)), data, source)
    if len(repeated):
        print(f"preprocess: kept the first of each repeated customer ID{' and date' if len(keys) > 1 else ''}, "
              f"dropped {len(repeated):,} rows", file=sys.stderr)
    plan = SplitPlan(data, positive_key_of(TableFacts.combine(facts), data, source), seed, repeated, source)
    if data.time_column is not None:
        periods = engine.map(_period_counts, table, plan, combine=dates.added_periods)
        plan = replace(plan, periods=dates.split_periods(periods, preprocess.test_periods, data.gap_periods,
                                                         data.time_column, source))
        train_rows = int(sum(periods[date].sum() for date in plan.periods.train))
    else:
        plan, train_rows = _random_split(engine, table, plan, preprocess.test_size, source)

    preprocessor = CustomerPreprocessor.for_schema(schema, preprocess.rare_category_min_count)
    statistics = engine.map(_training_statistics, table, plan, preprocessor, combine=_added)
    high = statistics["histograms"]
    needed = {column: quantiles.needed_bins(histogram) for column, histogram in high.items()}
    low = engine.map(_training_statistics, table, plan, preprocessor, needed, combine=_added)["histograms"]
    preprocessor.fit_statistics(quantiles.medians(high, low), [c for c, gap in statistics["gaps"].items() if gap],
                                statistics["levels"],
                                {c: quantiles.numeric_bins(c, h, low, train_rows) for c, h in high.items()}, train_rows)
    return plan, preprocessor


def _random_split(engine: Engine, table: Table, plan: SplitPlan, test_size: float,
                  source: str) -> tuple[SplitPlan, int]:
    """The plan with the seeded-hash split's cut-off keys, and the training rows."""
    bins = engine.map(_split_bins, table, plan, combine=sampling.added_bins)
    counts = {label: int(bins[label].sum()) for label in (0, 1)}
    quotas = sampling.split_quotas(counts, test_size)
    if quotas[1] < 1 or counts[1] - quotas[1] < 2:
        raise DataError(f"{source}: {counts[1]} buyer rows cannot be split with preprocess.test_size={test_size} "
                        "so both splits hold buyers; use more data or change preprocess.test_size")
    if quotas[0] < 1 or counts[0] - quotas[0] < 1:
        raise DataError(f"{source}: {counts[0]} non-buyer rows cannot be split with preprocess.test_size="
                        f"{test_size}; use more data or change preprocess.test_size")
    where = sampling.bins_of_quotas(bins, quotas)
    in_bins = engine.map(_split_keys_in_bins, table, plan, where, combine=sampling.joined_keys)
    return replace(plan, cutoffs=sampling.cutoffs_of(where, in_bins)), sum(counts.values()) - sum(quotas.values())


def _processed(frame: pd.DataFrame, labels: np.ndarray, when: np.ndarray | None, preprocessor: CustomerPreprocessor,
               id_columns: list[str], source: str) -> pd.DataFrame:
    """Rows as preprocess writes them: IDs, features, label (and snapshot date)."""
    features = preprocessor.transform(frame, source).reset_index(drop=True)
    ids = frame[list(id_columns)].reset_index(drop=True)
    label = {LABEL: labels.astype(np.int8), **({SNAPSHOT: when} if when is not None else {})}
    return pd.concat([ids, features, pd.DataFrame(label)], axis=1)


def split_partition(frame: pd.DataFrame, offset: int, plan: SplitPlan,
                    preprocessor: CustomerPreprocessor) -> tuple[tuple[pd.DataFrame, pd.DataFrame], SplitCounts]:
    """A partition's (training rows, test rows) as preprocess writes them, and how many of each."""
    frame, labels, side, when = _sides(frame, offset, plan)
    ids = list(plan.data.id_columns)
    train, test = (_processed(frame[side == s], labels[side == s], when[side == s] if when is not None else None,
                              preprocessor, ids, plan.source) for s in (0, 1))
    return (train, test), SplitCounts(len(train), int(labels[side == 0].sum()), len(test), int((side < 0).sum()))


def preprocess_table(engine: Engine, table: Table, data: DataParams, preprocess: PreprocessParams, seed: int,
                     train_output: str | Path, test_output: str | Path
                     ) -> tuple[SplitCounts, dates.PeriodSplit | None, CustomerPreprocessor]:
    """Check, split and preprocess the table at `table`; write the splits; return their sizes, the snapshot
    dates of each side (None: a random split) and the fitted preprocessor."""
    plan, preprocessor = plan_split(engine, table, data, preprocess, seed, str(table))
    parts = engine.write(split_partition, table, [train_output, test_output], plan, preprocessor)
    counts = SplitCounts(sum(p.train_rows for p in parts), sum(p.train_buyers for p in parts),
                         sum(p.test_rows for p in parts), sum(p.left_out_rows for p in parts))
    return counts, plan.periods, preprocessor


def preprocess_customers(engine: Engine, frame: pd.DataFrame, data: DataParams, preprocess: PreprocessParams,
                         seed: int, source: str = "input") -> tuple[pd.DataFrame, pd.DataFrame, CustomerPreprocessor]:
    """`preprocess_table` for a table already in this process, without writing: (train, test, fitted
    preprocessor)."""
    plan, preprocessor = plan_split(engine, frame, data, preprocess, seed, source)
    [((train, test), _)] = engine.map(split_partition, frame, plan, preprocessor)
    return train, test, preprocessor
