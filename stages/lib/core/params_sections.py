"""The sections of params.yaml as pydantic models: strict types, ranges, choices, no unknown keys.

Each field's description is its documentation: docs/parameters.md and the comments of
params.yaml are generated from them (`python -m docs.build`). stages.lib.core.params
assembles the sections into Params and loads the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

RESAMPLE_METHODS = ("none", "class_weight", "smote", "smotenc", "borderline_smote", "adasyn")
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")
THRESHOLD_OBJECTIVES = ("f1", "min_precision", "top_fraction", "profit")
PRIORS = ("uniform", "log-uniform")
DIMENSION_TYPES = ("real", "integer")
DUPLICATE_ID_POLICIES = ("warn", "error")
GENERATE_TRUTHS = ("nonlinear", "linear")
ENGINES = ("local", "dask")
# model.family: which model ships; `auto` compares the tuned LightGBM with a logistic regression
# (stages/lib/modeling/search.py).
MODEL_FAMILIES = ("auto", "lightgbm", "logistic_regression")
# model.threads: the cores a fit gets (stages/lib/engines/base.py); sample_rows: every row up to a size, a sample above.
AUTO = "auto"
# What `auto` means for each sample_rows: every row of the training split up to this many, a stratified
# sample of this many above it.
AUTO_SAMPLE_ROWS = {"tune.sample_rows": 200_000, "calibration.sample_rows": 1_000_000,
                    "evaluate.baseline_sample_rows": 1_000_000}
# Scorers that rank customers by probability; BayesSearchCV maximises the one chosen.
TUNE_SCORINGS = ("average_precision", "roc_auc", "neg_log_loss", "neg_brier_score", "f1", "recall", "precision")

Text = Annotated[str, StringConstraints(min_length=1)]
# A positive count, or `auto`.
Count = Union[Annotated[int, Field(ge=1)], Literal[AUTO]]
# Rows of a stratified sample of the training split: a count, `auto` (AUTO_SAMPLE_ROWS) or null (every row).
SampleRows = Optional[Union[Annotated[int, Field(ge=10)], Literal[AUTO]]]


def _sample_size(value: int | str | None, key: str) -> int | None:
    return AUTO_SAMPLE_ROWS[key] if value == AUTO else value


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _no_ids(value: Any) -> Any:
    """An empty `id_columns:` (YAML null) means no ID columns, as `[]` does."""
    return [] if value is None else value


def _doc(text: str, **constraints: Any) -> Any:
    """A field's meaning: docs/parameters.md is generated from these (python -m docs.build)."""
    return Field(description=" ".join(text.split()), **constraints)


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

    rows: int = _doc("Customers in the generated table.", ge=1)
    purchase_rate: float = _doc("Share of buyers.", gt=0.0, lt=0.5)
    truth: Literal[GENERATE_TRUTHS] = _doc(
        "How purchases are drawn: `nonlinear` (saturating and interacting effects, part of the intent never "
        "exported) or `linear` (log-odds linear in seven exported columns: a logistic regression is the ideal "
        "scorer).", default="nonlinear")


class DataParams(Section):
    """The table the pipeline learns from, and its schema (docs/own-data.md)."""

    path: Text = _doc("The table: a CSV or parquet file, or a directory of parquet files (read in name order as "
                      "one table).")
    target: Text = _doc("The label column.")
    positive_label: Union[int, bool, Text] = _doc(
        "The label value that means \"bought\": 1, true, Yes, ... (compared case-insensitively as text, so 1, "
        "1.0 and \"1\" match).")
    id_columns: Annotated[list[Text], BeforeValidator(_no_ids)] = _doc(
        "Columns that identify a customer: not features, kept in the scores. Empty (or `[]`) for a table "
        "without IDs: customers are then told apart by row number.", default=[])
    categorical_columns: Optional[list[Text]] = _doc(
        "Columns treated as categories; empty infers them (every text or true/false column that is not an ID "
        "or the target).", default=None)
    duplicate_ids: Literal[DUPLICATE_ID_POLICIES] = _doc(
        "A repeated customer ID: `warn` keeps each customer's first row (so no customer is on both sides of the "
        "split), `error` stops.", default="warn")


class PreprocessParams(Section):
    """The split and the preprocessor, fitted on the training split only."""

    test_size: float = _doc(
        "Share of customers held out for evaluation, stratified exactly: of buyers and of non-buyers, "
        "round(test_size x their count) customers, those with the smallest seeded hashes of their ID (of their "
        "row number without ID columns), so a customer keeps its side however the table is cut into files.",
        gt=0.0, lt=1.0)
    rare_category_min_count: int = _doc(
        "Levels seen fewer times in training become `__other__`, as do levels never seen; missing values are "
        "the level `__missing__`.", default=10, ge=1)


class ResampleParams(Section):
    """Handling the rare class: applied to training rows only, inside every cross-validation fold too."""

    method: Literal[RESAMPLE_METHODS] = _doc(
        "`none`, `class_weight` (LightGBM's `is_unbalance`, no resampling), `smote`, `smotenc`, "
        "`borderline_smote` or `adasyn` (docs/experiments.md has the comparison).")
    k_neighbors: int = _doc("Neighbours SMOTE interpolates between (ADASYN: `n_neighbors`); needs at least k + 1 "
                            "buyers in every training fold.", default=5, ge=1)
    sampling_strategy: float = _doc("Buyers per non-buyer after resampling (imbalanced-learn's float strategy).",
                                    default=1.0, gt=0.0, le=1.0)


class ModelParams(Section):
    """Shared by tune, calibrate and train."""

    family: Literal[MODEL_FAMILIES] = _doc(
        "The model that ships: `lightgbm`, `logistic_regression`, or `auto`: both tuned, then compared on fresh "
        "folds, and the logistic regression ships unless LightGBM ranks better by more than one standard error "
        "(docs/metrics.md, \"Which model ships\").", default="auto")
    n_estimators: int = _doc("LightGBM's boosting rounds (tunable too: add it to the search space).", ge=1)
    threads: Count = _doc(
        "LightGBM threads inside one fit: `auto` (the usable cores divided among the fits running at once) or a "
        "number. Plain trees come out the same bits with any count, so `auto` changes speed, never results; "
        "linear leaves (`linear_tree`) change in their last bits, so a search space that may pick them needs a "
        "number here.", default=AUTO)


class Dimension(Section):
    """One dimension of `tune.search_space`: a range or a list of categories."""

    low: Optional[float] = _doc("Lowest value of a range.", default=None)
    high: Optional[float] = _doc("Highest value of a range.", default=None)
    prior: Literal[PRIORS] = _doc("How a range is searched: `uniform` or `log-uniform`.", default="uniform")
    type: Literal[DIMENSION_TYPES] = _doc("`real` or `integer`.", default="real")
    categories: Optional[list[Union[Text, int, float, bool]]] = _doc(
        "The values to choose from, instead of a range.", default=None)


class TuneParams(Section):
    """BayesSearchCV over LightGBM (and, with `model.family: auto`, a grid over the logistic regression)."""

    n_iter: int = _doc("Points the Bayesian search evaluates (the first 10 at random, then the Gaussian "
                       "process's proposals).", ge=1)
    cv_folds: int = _doc("Stratified folds per point, on the original training split with the resampler inside "
                         "each fold.", ge=2)
    # Keys are LightGBM parameter names; a YAML key such as 1 is read as "1".
    search_space: dict[Annotated[str, BeforeValidator(str)], Dimension] = _doc(
        "LightGBM parameters to search, each a Dimension: `{low, high, prior, type}` or `{categories: [...]}`; "
        "any `LGBMClassifier` argument. When the best point sits on an end of a range, `metrics/tune.json` "
        "lists it under `edges` and the stage names the range to widen.", min_length=1)
    scoring: Literal[TUNE_SCORINGS] = _doc("What the search maximises.", default="average_precision")
    n_points: int = _doc(
        "Candidates the search proposes per step; n_points x cv_folds fits run side by side. A committed value: "
        "it changes the search, so it is never the machine's.", default=1, ge=1)
    early_stopping_rounds: Optional[int] = _doc(
        "Stop each cross-validation fit after this many rounds without improvement on 10 % of its training fold "
        "(empty: off, always model.n_estimators trees); the best candidate's round count becomes n_estimators "
        "for calibrate and train.", default=None, ge=1)
    sample_rows: SampleRows = _doc(
        "Tune on a stratified sample of the training split: `auto` is every row up to 200,000 and a sample of "
        "200,000 above, a number is that many, empty is every row. The same sample on either engine.",
        default=AUTO)

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "tune.sample_rows")


class CalibrationParams(Section):
    """Maps scores to probabilities, fitted on out-of-fold predictions of the training split."""

    method: Literal[CALIBRATION_METHODS] = _doc("`none`, `sigmoid` (Platt) or `isotonic`.")
    cv_folds: int = _doc("Folds for the out-of-fold predictions.", default=3, ge=2)
    sample_rows: SampleRows = _doc(
        "Out-of-fold predictions on a stratified sample, as tune.sample_rows: `auto` is every row up to "
        "1,000,000.", default=AUTO)

    @property
    def sample_size(self) -> int | None:
        return _sample_size(self.sample_rows, "calibration.sample_rows")


class ThresholdParams(Section):
    """The decision threshold (`will_buy`), chosen on out-of-fold predictions (docs/metrics.md)."""

    objective: Literal[THRESHOLD_OBJECTIVES] = _doc(
        "`f1` (maximise F1), `min_precision` (the best recall with at least threshold.min_precision), "
        "`top_fraction` (flag that share of customers: a contact budget) or `profit` (the most profitable "
        "threshold for the costs below).")
    min_precision: float = _doc("objective min_precision: the precision to reach.", default=0.5, gt=0.0, le=1.0)
    top_fraction: float = _doc("objective top_fraction: the share of customers to flag.", default=0.1, gt=0.0,
                               le=1.0)
    contact_cost: float = _doc("objective profit: what contacting one customer costs.", default=1.0, gt=0.0)
    buyer_value: float = _doc("objective profit: what one buyer reached is worth, in the same currency; the "
                              "threshold maximises buyer_value x buyers reached - contact_cost x contacts.",
                              default=20.0, gt=0.0)


class EvaluateParams(Section):
    """What evaluate measures on the untouched test split."""

    top_fraction: float = _doc("Where precision at k, lift and capture rate are read: the top of the list.",
                               default=0.1, gt=0.0, le=1.0)
    calibration_bins: int = _doc("Bins (equal counts) of the calibration curve.", default=10, ge=2)
    baseline_sample_rows: SampleRows = _doc(
        "The baselines' training rows (logistic regression, default LightGBM), a stratified sample as "
        "tune.sample_rows: `auto` is every row up to 1,000,000.", default=AUTO)

    @property
    def baseline_sample_size(self) -> int | None:
        return _sample_size(self.baseline_sample_rows, "evaluate.baseline_sample_rows")
