"""Check the customer table, split it, and fit the preprocessor on the training split only.

The split is stratified and keeps file order inside each side; each customer's
first row is kept, so no customer is on both sides. The preprocessor
(`stages.lib.features`) is fitted on training rows and applied to both.

`preprocess_on_dask` does the same for a partitioned table on a Dask cluster
(compute.engine dask), without any process holding the whole table.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from stages.lib.compute import tree_reduce
from stages.lib.errors import DataError
from stages.lib.features import CustomerPreprocessor, category_counts
from stages.lib.files import atomic_directory
from stages.lib.hashing import row_numbers, seeded_hash
from stages.lib.params import DataParams, PreprocessParams
from stages.lib.schema import (
    LABEL,
    TableFacts,
    binary_target,
    check_table_facts,
    check_training_table,
    positive_key_of,
    target_labels,
)
from stages.lib.tables import PARQUET_SUFFIXES, PART_NAME, READ_ERRORS, parquet_parts, unreadable_on_cluster


def split_customers(frame: pd.DataFrame, y: np.ndarray, test_size: float, seed: int,
                    source: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Stratified train/test split; both sides must hold buyers and non-buyers."""
    buyers = int(y.sum())
    test_buyers = int(round(buyers * test_size))
    if test_buyers < 1 or buyers - test_buyers < 2:
        raise DataError(
            f"{source}: {buyers} buyer rows cannot be split with preprocess.test_size={test_size} "
            "so both splits hold buyers; use more data or change preprocess.test_size"
        )
    rows = np.arange(len(frame))
    try:
        train_rows, test_rows = train_test_split(rows, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as error:
        raise DataError(f"{source}: cannot split ({str(error).splitlines()[0]}); "
                        "use more data or change preprocess.test_size") from None
    # Keep the file order inside each split, so outputs do not depend on the shuffle's order.
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    return frame.iloc[train_rows], frame.iloc[test_rows], y[train_rows], y[test_rows]


def deduplicate_ids(frame: pd.DataFrame, data: DataParams) -> pd.DataFrame:
    """Keep each customer's first row, so no customer is on both sides of the split."""
    if not data.id_columns:
        return frame
    keep = ~frame.duplicated(subset=list(data.id_columns), keep="first")
    if keep.all():
        return frame
    print(f"preprocess: kept the first of each repeated customer ID, dropped {int((~keep).sum()):,} rows",
          file=sys.stderr)
    return frame[keep]


def preprocess_customers(frame: pd.DataFrame, data: DataParams, preprocess: PreprocessParams, seed: int,
                         source: str = "input") -> tuple[pd.DataFrame, pd.DataFrame, CustomerPreprocessor]:
    """Return (train, test, fitted preprocessor); tables hold IDs, features and LABEL."""
    schema = check_training_table(frame, data, source)
    frame = deduplicate_ids(frame, data)
    y = binary_target(frame, data, source)
    train_raw, test_raw, y_train, y_test = split_customers(frame, y, preprocess.test_size, seed, source)
    preprocessor = CustomerPreprocessor.for_schema(schema, preprocess.rare_category_min_count)
    preprocessor.fit(train_raw)

    def assemble(raw: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
        table = preprocessor.transform(raw, source).reset_index(drop=True)
        ids = raw[list(data.id_columns)].reset_index(drop=True)
        return pd.concat([ids, table, pd.DataFrame({LABEL: labels.astype(np.int8)})], axis=1)

    return assemble(train_raw, y_train), assemble(test_raw, y_test), preprocessor


# --- compute.engine dask: a partitioned table, preprocessed on the cluster --------------------------------------

# Columns the Dask engine adds to each partition while it works; none reaches an output.
ROW, IN_TEST = "__row__", "__in_test__"


@dataclass(frozen=True)
class SplitCounts:
    train_rows: int
    train_buyers: int
    test_rows: int


def _labelled(frame: pd.DataFrame, offset: int, data: DataParams, positive: str, test_size: float,
              seed: int) -> pd.DataFrame:
    """One partition with its 0/1 label, its rows' numbers in the whole table, and their side of the split.

    A customer is in the test split when a hash of its ID (of its row number without ID columns) and
    the seed falls below test_size: the same customer is on the same side however the table is cut into
    files, and a repeated ID is on one side only.
    """
    rows = row_numbers(offset, len(frame))
    hashed = seeded_hash(frame[list(data.id_columns)] if data.id_columns else rows, seed)
    # The top 53 bits as a uniform number in [0, 1): exact in a float64.
    uniform = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return frame.assign(**{LABEL: target_labels(frame[data.target], positive), ROW: rows.to_numpy(np.int64),
                           IN_TEST: uniform < test_size})


def _repeated_rows(frame: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """The row numbers of every repeat of an ID but its first row (all of an ID's rows are in `frame`)."""
    ordered = frame.sort_values(ROW, kind="stable")
    return ordered.loc[ordered.duplicated(subset=id_columns, keep="first"), ROW]


def _without_rows(frame: pd.DataFrame, dropped: np.ndarray) -> pd.DataFrame:
    return frame[~frame[ROW].isin(dropped)]


# Exact medians without holding a column: a float32's bits, flipped so that their order as unsigned
# integers is the numbers' order, are counted by their high 16 bits, then, within the bin holding
# the middle rank, by their low 16 bits (stages/lib/features.py's medians, to the bit). The counts
# are sparse (a Series of the bins that occur), so a partition's statistics stay small.
HALF_BITS = 16
LOW_MASK = (1 << HALF_BITS) - 1


def _sortable_bits(values: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))


def _float_of(key: int) -> np.float32:
    bits = key & 0x7FFFFFFF if key >> 31 else ~key & 0xFFFFFFFF
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def _bin_counts(bins: np.ndarray) -> pd.Series:
    """How often each bin occurs, indexed by the bins that do, in order."""
    values, counts = np.unique(bins, return_counts=True)
    return pd.Series(counts.astype(np.int64), index=values.astype(np.int64))


def _added_counts(first: pd.Series, second: pd.Series) -> pd.Series:
    return first.add(second, fill_value=0).astype(np.int64).sort_index()


def _training_statistics(frame: pd.DataFrame, preprocessor: CustomerPreprocessor, source: str,
                         high_bins: dict[str, list[int]] | None = None) -> dict:
    """What the preprocessor is fitted on, for one partition's training rows, in a form partitions add up:
    rows and buyers on each side of the split, numeric gaps, level counts and the medians' bit histograms
    (high halves; with `high_bins`, the low halves of the values in those bins)."""
    train = frame[~frame[IN_TEST]]
    numeric = preprocessor.numeric_block(train, source)
    histograms = {}
    for column in preprocessor.numeric_columns:
        keys = _sortable_bits(numeric[column].dropna().to_numpy(np.float32))
        if high_bins is None:
            histograms[column] = _bin_counts(keys >> np.uint32(HALF_BITS))
        else:
            for high in high_bins[column]:
                inside = keys[(keys >> np.uint32(HALF_BITS)) == high]
                histograms[(column, high)] = _bin_counts(inside & np.uint32(LOW_MASK))
    if high_bins is not None:
        return {"histograms": histograms}
    sides = frame.groupby(IN_TEST)[LABEL].agg(["sum", "count"]).reindex([False, True], fill_value=0)
    return {
        "sides": sides.to_numpy(np.int64),
        "gaps": numeric.isna().any().to_dict(),
        "levels": {c: category_counts(train[c]) for c in preprocessor.categorical_columns},
        "histograms": histograms,
    }


def _added(first: dict, second: dict) -> dict:
    """Two partitions' statistics as one."""
    added = {"histograms": {key: _added_counts(first["histograms"][key], second["histograms"][key])
                            for key in first["histograms"]}}
    if "sides" in first:
        added["sides"] = first["sides"] + second["sides"]
        added["gaps"] = {c: first["gaps"][c] or second["gaps"][c] for c in first["gaps"]}
        added["levels"] = {c: _added_counts(first["levels"][c], second["levels"][c]) for c in first["levels"]}
    return added


def _tree_added(pieces: list, fan_in: int = 8):
    """The statistics of every partition added up in a tree of Dask tasks, so no one task holds them all."""
    return tree_reduce(pieces, functools.partial(functools.reduce, _added), fan_in)


def _bins_of_ranks(histogram: pd.Series, ranks: list[int]) -> list[tuple[int, int]]:
    """For each rank (0: the smallest value), the bin holding it and its rank inside that bin."""
    cumulative = np.cumsum(histogram.to_numpy())
    found = []
    for rank in ranks:
        which = int(np.searchsorted(cumulative, rank, side="right"))
        found.append((int(histogram.index[which]), rank - (int(cumulative[which - 1]) if which else 0)))
    return found


def _middle_ranks(histogram: pd.Series) -> list[tuple[int, int]]:
    """The bins holding the two middle ranks (the one middle rank twice, for an odd count)."""
    count = int(histogram.sum())
    return _bins_of_ranks(histogram, [(count - 1) // 2, count // 2])


def _medians(high: dict[str, pd.Series], low: dict[tuple[str, int], pd.Series]) -> dict[str, float]:
    """Each column's median from its histograms, as pandas computes it for float32 (NaN without values)."""
    medians = {}
    for column, histogram in high.items():
        if not histogram.sum():
            medians[column] = float("nan")
            continue
        values = []
        for bin_high, rank in _middle_ranks(histogram):
            [(bin_low, _)] = _bins_of_ranks(low[(column, bin_high)], [rank])
            values.append(_float_of((bin_high << HALF_BITS) | bin_low))
        medians[column] = float((values[0] + values[1]) / np.float32(2))
    return medians


def _processed(frame: pd.DataFrame, preprocessor: CustomerPreprocessor, id_columns: list[str],
               source: str) -> pd.DataFrame:
    """A partition as preprocess writes it: IDs, features, label (as the local engine's `assemble`)."""
    features = preprocessor.transform(frame, source).reset_index(drop=True)
    ids = frame[list(id_columns)].reset_index(drop=True)
    labels = pd.DataFrame({LABEL: frame[LABEL].to_numpy(np.int8)})
    return pd.concat([ids, features, labels], axis=1)


def preprocess_on_dask(path: str, data: DataParams, preprocess: PreprocessParams, seed: int, train_output: str,
                       test_output: str, client) -> tuple[SplitCounts, CustomerPreprocessor]:
    """preprocess_customers for a partitioned parquet table (directory or glob) on a Dask cluster.

    Nothing holds the whole table: the check adds up each partition's facts
    (schema.TableFacts), the split is decided row by row (`_labelled`), the
    preprocessor is fitted on the training rows' statistics added up over
    partitions (the medians exact, from histograms of their bits), and the workers
    transform their partitions and write the splits as directories of parquet
    files, one per input partition, in input order. Each output is replaced only
    once it is complete. The result is deterministic for the same files; it is
    not the local engine's split, which needs every row in one process.
    """
    import dask
    import dask.dataframe as dd

    source = str(path)
    try:
        table = dd.read_parquet([str(part) for part in parquet_parts(path)])
        parts = table.to_delayed()
        facts = list(dask.compute(*[dask.delayed(TableFacts.of)(part, data, False) for part in parts]))
    except READ_ERRORS as error:
        raise unreadable_on_cluster(source, error) from None
    header = facts[0].header
    duplicated = 0
    if data.id_columns and set(data.id_columns) <= set(header.columns):
        ids = table[list(data.id_columns)]
        duplicated = sum(f.rows for f in facts) - len(ids.drop_duplicates(split_out=table.npartitions))
    whole = TableFacts.combine(facts, duplicated)
    schema = check_table_facts(whole, data, source)
    positive = positive_key_of(whole, data, source)

    offsets = np.concatenate([[0], np.cumsum([f.rows for f in facts])[:-1]]).astype(int)
    meta = _labelled(table._meta, 0, data, positive, preprocess.test_size, seed)
    labelled = dd.from_delayed(
        [dask.delayed(_labelled)(part, int(offset), data, positive, preprocess.test_size, seed)
         for part, offset in zip(parts, offsets)], meta=meta, verify_meta=False)
    if duplicated:
        keys = list(data.id_columns) + [ROW]
        repeats = labelled[keys].shuffle(on=list(data.id_columns)).map_partitions(
            _repeated_rows, list(data.id_columns), meta=(ROW, "int64")).compute().to_numpy()
        labelled = labelled.map_partitions(_without_rows, repeats, meta=meta)
        print(f"preprocess: kept the first of each repeated customer ID, dropped {len(repeats):,} rows",
              file=sys.stderr)

    preprocessor = CustomerPreprocessor.for_schema(schema, preprocess.rare_category_min_count)
    partitions = labelled.to_delayed()
    statistics = _tree_added([dask.delayed(_training_statistics)(part, preprocessor, "training data")
                              for part in partitions]).compute()
    (train_rows, train_buyers), (test_rows, test_buyers) = statistics["sides"][:, ::-1].tolist()
    counts = SplitCounts(train_rows, train_buyers, test_rows)
    if test_buyers < 1 or train_buyers < 2:
        raise DataError(
            f"{source}: {train_buyers + test_buyers} buyer rows cannot be split with preprocess.test_size="
            f"{preprocess.test_size} so both splits hold buyers; use more data or change preprocess.test_size"
        )
    high = statistics["histograms"]
    needed = {column: sorted({bin_high for bin_high, _ in _middle_ranks(histogram)})
              for column, histogram in high.items() if histogram.sum()}
    needed.update({column: [] for column in high if column not in needed})
    low = _tree_added([dask.delayed(_training_statistics)(part, preprocessor, "training data", needed)
                       for part in partitions]).compute()["histograms"]
    preprocessor.fit_statistics(_medians(high, low), [c for c, gap in statistics["gaps"].items() if gap],
                                statistics["levels"])

    train = labelled[~labelled[IN_TEST]]
    test = labelled[labelled[IN_TEST]]
    out_meta = _processed(train._meta, preprocessor, data.id_columns, source)
    writes = []
    with atomic_directory(train_output, holds=PARQUET_SUFFIXES) as train_tmp, \
            atomic_directory(test_output, holds=PARQUET_SUFFIXES) as test_tmp:
        for split, folder in ((train, train_tmp), (test, test_tmp)):
            processed = split.map_partitions(_processed, preprocessor, list(data.id_columns), source, meta=out_meta)
            writes.append(processed.to_parquet(str(folder), write_index=False, compression="zstd",
                                               write_metadata_file=False, name_function=PART_NAME.format,
                                               compute=False))
        dask.compute(*writes)
    return counts, preprocessor
