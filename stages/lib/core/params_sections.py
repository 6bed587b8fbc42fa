"""The sections of params.yaml about the data: base, compute, generate, data and preprocess (pydantic models)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator

from stages.lib.core.params_types import (
    DUPLICATE_ID_POLICIES,
    ENGINES,
    GENERATE_TRUTHS,
    Section,
    Text,
    empty_is_none,
    no_ids,
)
from stages.lib.core.params_types import doc as _doc


class BaseParams(Section):
    """Shared by every stage."""

    seed: int = _doc("Every random choice: the generated data, the split, SMOTE, folds, the search, the trees, "
                     "the baselines' bootstrap.", ge=0, le=2**32 - 1)


class ComputeParams(Section):
    """Where the work runs; what is computed is the same on either engine (docs/scaling-out.md)."""

    engine: Literal[ENGINES] = _doc(
        "`local`: this process, and independent fits (tune's cross-validation fits, calibrate's folds, "
        "evaluate's baselines) side by side in threads, sized to the usable cores (CPU affinity, cgroup quota; "
        "`PROPENSITY_WORKERS=N` uses fewer). `dask`: a Dask cluster (`DASK_SCHEDULER_ADDRESS` or Dask's config, "
        "never this file; else a `LocalCluster` on this machine). Either engine gives the same split, "
        "preprocessor, samples, search, calibration and baselines; only the final fit differs (LightGBM's "
        "data-parallel training on Dask).", default="local")


class GenerateParams(Section):
    """The embedded synthetic customer export (`generate` stage); unused when `data.path` is your own table."""

    rows: int = _doc("Rows of the generated table: customers, or with several snapshots customers x snapshots "
                     "(about; customers join as the months go by).", ge=1)
    snapshots: int = _doc(
        "Monthly snapshots of the same customers (one row per customer per snapshot date, in a `snapshot_date` "
        "column; the label: a purchase in the following month), whose behaviour evolves, with new customers "
        "joining and the population drifting slowly; 1: a single export without dates.", default=1, ge=1)
    purchase_rate: float = _doc("Share of buyers.", gt=0.0, lt=0.5)
    truth: Literal[GENERATE_TRUTHS] = _doc(
        "How purchases are drawn: `nonlinear` (saturating and interacting effects, part of the intent never "
        "exported) or `linear` (log-odds linear in seven exported columns: a logistic regression is the ideal "
        "scorer).", default="nonlinear")


class DataParams(Section):
    """The table the pipeline learns from, and its schema (docs/own-data.md)."""

    path: Text = _doc("The table: a CSV or parquet file, or a directory of parquet files (read in name order as "
                      "one table).")
    events: Text = _doc("The event tables the `features` stage reads (a directory: the customers table and one "
                        "table per features.tables entry, each a .csv or .parquet file or a directory of parquet "
                        "files); unused when data.path is a table of your own.", default="data/raw/events")
    target: Text = _doc("The label column.")
    positive_label: Union[int, bool, Text] = _doc(
        "The label value that means \"bought\": 1, true, Yes, ... (compared case-insensitively as text, so 1, "
        "1.0 and \"1\" match).")
    id_columns: Annotated[list[Text], BeforeValidator(no_ids)] = _doc(
        "Columns that identify a customer: not features, kept in the scores. Empty (or `[]`) for a table "
        "without IDs: customers are then told apart by row number.", default=[])
    categorical_columns: Optional[list[Text]] = _doc(
        "Columns treated as categories; empty infers them (every text or true/false column that is not an ID "
        "or the target).", default=None)
    duplicate_ids: Literal[DUPLICATE_ID_POLICIES] = _doc(
        "A repeated customer ID (with data.time_column: a repeated ID and date): `warn` keeps the first row (so "
        "no customer is on both sides of a random split), `error` stops.", default="warn")
    time_column: Annotated[Optional[Text], BeforeValidator(empty_is_none)] = _doc(
        "The snapshot date of each row (ISO dates or timestamps), for a table with one row per customer per "
        "snapshot: the latest dates are the test split (preprocess.test_periods), every fold validates on "
        "dates later than all of its training rows, and the column is never a feature. Empty: no dates, a "
        "random split by customer (docs/own-data.md, \"Dated exports\").", default=None)
    gap_periods: int = _doc(
        "With data.time_column: snapshot dates left out between the rows a model learns from and the rows it is "
        "validated or tested on, for labels that arrive late (a purchase window longer than the time between "
        "snapshots).", default=0, ge=0)


class PreprocessParams(Section):
    """The split and the preprocessor, fitted on the training split only."""

    test_size: float = _doc(
        "Without data.time_column: share of customers held out for evaluation, stratified exactly: of buyers and "
        "of non-buyers, "
        "round(test_size x their count) customers, those with the smallest seeded hashes of their ID (of their "
        "row number without ID columns), so a customer keeps its side however the table is cut into files.",
        gt=0.0, lt=1.0)
    test_periods: int = _doc(
        "With data.time_column: the latest snapshot dates held out for evaluation (the out-of-time test split); "
        "every training row is dated before them (and before data.gap_periods more).", default=1, ge=1)
    rare_category_min_count: int = _doc(
        "Levels seen fewer times in training become `__other__`, as do levels never seen; missing values are "
        "the level `__missing__`.", default=10, ge=1)
