"""Check the customer table, split it, and fit the preprocessor on the training split only.

One algorithm on every engine, partition by partition (stages.lib.engines.base.Engine):

1. the table's facts, added up over partitions, are checked (stages.lib.data.schema);
   each repeated customer ID keeps its first row, so no customer is on both sides;
2. the split is stratified by seeded keys (stages.lib.data.sampling): of each class,
   the round(test_size x its rows) customers with the smallest keys are held out;
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
from stages.lib.data import quantiles, sampling
from stages.lib.data.facts import TableFacts
from stages.lib.data.preprocessor import CustomerPreprocessor, category_counts
from stages.lib.data.schema import LABEL, check_table_facts, positive_key_of, target_labels
from stages.lib.engines.base import Engine, Table


@dataclass(frozen=True)
class SplitPlan:
    """Everything a partition needs to know to split itself as the whole table is split."""

    data: DataParams
    positive: str                      # the checked target's key for data.positive_label
    seed: int
    repeated: np.ndarray               # numbers of the rows dropped as repeats of an earlier row's IDs
    cutoffs: sampling.Cutoffs | None   # of each class, the largest split key held out for testing
    source: str


@dataclass(frozen=True)
class SplitCounts:
    train_rows: int
    train_buyers: int
    test_rows: int


def _facts(frame: pd.DataFrame, offset: int, data: DataParams) -> TableFacts:
    # Repeated IDs across partitions are found by the engine (Engine.repeated_rows), not counted here.
    return TableFacts.of(frame, data, count_duplicates=False)


def _labelled(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A partition without its repeated rows, with its 0/1 labels and split keys."""
    keys = sampling.split_keys(frame, offset, plan.data.id_columns, plan.seed)
    if len(plan.repeated):
        rows = np.arange(offset, offset + len(frame))
        keep = ~np.isin(rows, plan.repeated)
        frame, keys = frame[keep], keys[keep]
    return frame, target_labels(frame[plan.data.target], plan.positive), keys


def _in_test(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame, labels, keys = _labelled(frame, offset, plan)
    return frame, labels, sampling.kept(keys, labels, plan.cutoffs)


def _split_bins(frame: pd.DataFrame, offset: int, plan: SplitPlan) -> dict[int, np.ndarray]:
    _, labels, keys = _labelled(frame, offset, plan)
    return sampling.key_bins(keys, labels)


def _split_keys_in_bins(frame: pd.DataFrame, offset: int, plan: SplitPlan, bins) -> dict[int, np.ndarray]:
    _, labels, keys = _labelled(frame, offset, plan)
    return sampling.keys_in_bins(keys, labels, bins)


def _training_statistics(frame: pd.DataFrame, offset: int, plan: SplitPlan, preprocessor: CustomerPreprocessor,
                         high_bins: dict[str, list[int]] | None = None) -> dict:
    """What the preprocessor is fitted on, for one partition's training rows, in a form partitions add up:
    numeric gaps, level counts and the medians' bit histograms (high halves; with `high_bins`, the low
    halves of the values in those bins)."""
    frame, _, in_test = _in_test(frame, offset, plan)
    train = frame[~in_test]
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
    if data.id_columns and set(data.id_columns) <= set(header.columns):
        repeated = engine.repeated_rows(table, data.id_columns)
    schema = check_table_facts(TableFacts.combine(facts, len(repeated)), data, source)
    if len(repeated):
        print(f"preprocess: kept the first of each repeated customer ID, dropped {len(repeated):,} rows",
              file=sys.stderr)
    plan = SplitPlan(data, positive_key_of(TableFacts.combine(facts), data, source), seed, repeated, None, source)

    bins = engine.map(_split_bins, table, plan, combine=sampling.added_bins)
    counts = {label: int(bins[label].sum()) for label in (0, 1)}
    quotas = sampling.split_quotas(counts, preprocess.test_size)
    if quotas[1] < 1 or counts[1] - quotas[1] < 2:
        raise DataError(
            f"{source}: {counts[1]} buyer rows cannot be split with preprocess.test_size={preprocess.test_size} "
            "so both splits hold buyers; use more data or change preprocess.test_size"
        )
    if quotas[0] < 1 or counts[0] - quotas[0] < 1:
        raise DataError(f"{source}: {counts[0]} non-buyer rows cannot be split with preprocess.test_size="
                        f"{preprocess.test_size}; use more data or change preprocess.test_size")
    where = sampling.bins_of_quotas(bins, quotas)
    in_bins = engine.map(_split_keys_in_bins, table, plan, where, combine=sampling.joined_keys)
    plan = replace(plan, cutoffs=sampling.cutoffs_of(where, in_bins))

    preprocessor = CustomerPreprocessor.for_schema(schema, preprocess.rare_category_min_count)
    statistics = engine.map(_training_statistics, table, plan, preprocessor, combine=_added)
    high = statistics["histograms"]
    needed = {column: quantiles.needed_bins(histogram) for column, histogram in high.items()}
    low = engine.map(_training_statistics, table, plan, preprocessor, needed, combine=_added)["histograms"]
    train_rows = counts[0] + counts[1] - quotas[0] - quotas[1]
    preprocessor.fit_statistics(quantiles.medians(high, low), [c for c, gap in statistics["gaps"].items() if gap],
                                statistics["levels"],
                                {c: quantiles.numeric_bins(c, h, low, train_rows) for c, h in high.items()}, train_rows)
    return plan, preprocessor


def _processed(frame: pd.DataFrame, labels: np.ndarray, preprocessor: CustomerPreprocessor,
               id_columns: list[str], source: str) -> pd.DataFrame:
    """Rows as preprocess writes them: IDs, features, label."""
    features = preprocessor.transform(frame, source).reset_index(drop=True)
    ids = frame[list(id_columns)].reset_index(drop=True)
    return pd.concat([ids, features, pd.DataFrame({LABEL: labels.astype(np.int8)})], axis=1)


def split_partition(frame: pd.DataFrame, offset: int, plan: SplitPlan,
                    preprocessor: CustomerPreprocessor) -> tuple[tuple[pd.DataFrame, pd.DataFrame], SplitCounts]:
    """A partition's (training rows, test rows) as preprocess writes them, and how many of each."""
    frame, labels, in_test = _in_test(frame, offset, plan)
    ids = list(plan.data.id_columns)
    train = _processed(frame[~in_test], labels[~in_test], preprocessor, ids, plan.source)
    test = _processed(frame[in_test], labels[in_test], preprocessor, ids, plan.source)
    return (train, test), SplitCounts(len(train), int(labels[~in_test].sum()), len(test))


def preprocess_table(engine: Engine, table: Table, data: DataParams, preprocess: PreprocessParams, seed: int,
                     train_output: str | Path, test_output: str | Path) -> tuple[SplitCounts, CustomerPreprocessor]:
    """Check, split and preprocess the table at `table`; write the splits; return their sizes and the
    fitted preprocessor."""
    plan, preprocessor = plan_split(engine, table, data, preprocess, seed, str(table))
    parts = engine.write(split_partition, table, [train_output, test_output], plan, preprocessor)
    counts = SplitCounts(sum(p.train_rows for p in parts), sum(p.train_buyers for p in parts),
                         sum(p.test_rows for p in parts))
    return counts, preprocessor


def preprocess_customers(engine: Engine, frame: pd.DataFrame, data: DataParams, preprocess: PreprocessParams,
                         seed: int, source: str = "input") -> tuple[pd.DataFrame, pd.DataFrame, CustomerPreprocessor]:
    """`preprocess_table` for a table already in this process, without writing: (train, test, fitted
    preprocessor)."""
    plan, preprocessor = plan_split(engine, frame, data, preprocess, seed, source)
    [((train, test), _)] = engine.map(split_partition, frame, plan, preprocessor)
    return train, test, preprocessor
