"""The sections of params.yaml about the models: resample, model, tune, calibration, threshold, evaluate."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator

from stages.lib.core.params_types import (
    AUTO,
    CALIBRATION_METHODS,
    DIMENSION_TYPES,
    MODEL_FAMILIES,
    PRIORS,
    RESAMPLE_METHODS,
    THRESHOLD_OBJECTIVES,
    TUNE_SCORINGS,
    Count,
    SampleRows,
    Section,
    Text,
    rows_of,
)
from stages.lib.core.params_types import doc as _doc


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
    of_rows: bool = _doc(
        "`true`: low and high are shares of the rows tune searches on, each bound rounded to a whole number "
        "(at least 1), so a leaf size fits a table of any size; `metrics/tune.json` records the bounds searched.",
        default=False)

    def resolved(self, rows: int) -> Dimension:
        """This dimension with the bounds searched on `rows` tuning rows (itself unless `of_rows`)."""
        if not self.of_rows:
            return self
        low = max(1, round(self.low * rows))
        return self.model_copy(update={"low": low, "high": max(low + 1, round(self.high * rows)), "of_rows": False})


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
        return rows_of(self.sample_rows, "tune.sample_rows")

    def space_searched(self, rows: int) -> dict[str, Dimension]:
        """search_space with the bounds searched on `rows` tuning rows (a dimension `of_rows` scales)."""
        return {name: dim.resolved(rows) for name, dim in self.search_space.items()}


class CalibrationParams(Section):
    """Maps scores to probabilities, fitted on out-of-fold predictions of the training split."""

    method: Literal[CALIBRATION_METHODS] = _doc(
        "`none`, `sigmoid` (Platt) or `isotonic`; neither calibration gives a probability of exactly 0 or 1 "
        "(isotonic: an end block without buyers gets the Jeffreys estimate 0.5 / (rows + 1)).")
    cv_folds: int = _doc("Folds for the out-of-fold predictions.", default=3, ge=2)
    sample_rows: SampleRows = _doc(
        "Out-of-fold predictions on a stratified sample, as tune.sample_rows: `auto` is every row up to "
        "1,000,000.", default=AUTO)

    @property
    def sample_size(self) -> int | None:
        return rows_of(self.sample_rows, "calibration.sample_rows")


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
        return rows_of(self.baseline_sample_rows, "evaluate.baseline_sample_rows")
