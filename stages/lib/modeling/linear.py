"""The logistic regression: the model family `tune` may ship instead of LightGBM, and a baseline.

One-hot categories (one level of each dropped), standardised numbers (preprocess
has already imputed them and added missing-value flags), L2-regularised with
strength 1/C. It is solved by Newton's method to a tight tolerance; with one level
of each category dropped the problem is well conditioned and its coefficients agree
to about 1e-13 across OpenBLAS kernels, so rounding them (and the probabilities,
which pass through BLAS and np.exp) gives the same bits on every x86-64 CPU.

Scoring unpickles this module's classes, so it imports scikit-learn only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from stages.lib.core.exact import round_linear_model, round_significant_bits
from stages.lib.data.schema import categorical_columns_of

COEFFICIENT_DIGITS = 6
INTERCEPT = "(intercept)"


class RoundedLogisticRegression(LogisticRegression):
    """scikit-learn's LogisticRegression whose coefficients and probabilities are rounded (stages.lib.core.exact)."""

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight=sample_weight)
        return round_linear_model(self, COEFFICIENT_DIGITS)

    def predict_proba(self, X):
        return round_significant_bits(super().predict_proba(X))


def level_name(feature: str, level) -> str:
    """An encoded column's name: `region=London`."""
    return f"{feature}={level}"


def _levels(column: pd.Series) -> list:
    codes = column.cat.codes.to_numpy()
    present = np.zeros(len(column.cat.categories), dtype=bool)
    present[np.unique(codes[codes >= 0])] = True
    categories = column.cat.categories
    return sorted(categories[present]) + list(categories[~present])


def logistic_regression(features: pd.DataFrame, C: float = 1.0, balanced: bool = False) -> Pipeline:
    """The unfitted pipeline for tables with `features`' columns and categories.

    The levels of each category are given, not found at fit time (finding them in
    text columns cost more than the fit itself): those present in `features`, in the
    order scikit-learn would find them, then the column's other levels. A level
    absent from the rows fitted on (from a fold, or never seen in training, such as
    the preprocessor's `__other__`) gets a zero column, which the penalty holds at
    zero: it scores as the reference level. `balanced`: weight the classes
    inversely to their counts (resample.method: class_weight).
    """
    categorical = categorical_columns_of(features)
    numeric = [c for c in features.columns if c not in set(categorical)]
    levels = [_levels(features[c]) for c in categorical]
    encode = ColumnTransformer([
        ("categories", OneHotEncoder(categories=levels, drop="first", handle_unknown="ignore", sparse_output=False,
                                     feature_name_combiner=level_name), categorical),
        ("numbers", StandardScaler(), numeric),
    ], verbose_feature_names_out=False)
    model = RoundedLogisticRegression(C=C, solver="newton-cholesky", tol=1e-10, max_iter=100,
                                      class_weight="balanced" if balanced else None)
    return Pipeline([("encode", encode), ("classifier", model)])


def coefficients(model: Pipeline) -> pd.DataFrame:
    """The fitted model's terms and coefficients, intercept first: a number's coefficient is per standard
    deviation of it (standardised), a category level's is against the column's first level."""
    classifier = model.named_steps["classifier"]
    terms = [INTERCEPT, *model.named_steps["encode"].get_feature_names_out()]
    values = [float(classifier.intercept_[0]), *map(float, classifier.coef_[0])]
    return pd.DataFrame({"term": terms, "coefficient": values})


def model_text(model: Pipeline) -> str:
    """models/model.txt for a logistic regression: what the coefficients mean, then one line per term."""
    table = coefficients(model)
    encoder = model.named_steps["encode"].named_transformers_["categories"]
    dropped = [f"{feature}={levels[index]}" for feature, levels, index
               in zip(encoder.feature_names_in_, encoder.categories_, encoder.drop_idx_)
               if index is not None] if hasattr(encoder, "feature_names_in_") else []
    width = max(len(term) for term in table["term"])
    lines = [
        "logistic regression: log-odds of buying = intercept + sum of coefficient x term",
        f"L2 penalty C={model.named_steps['classifier'].C:g}; numbers standardised (coefficient per standard "
        "deviation); a level's coefficient is against its column's reference level",
        f"reference levels: {', '.join(dropped) if dropped else 'none'}",
        "",
        *(f"{term:<{width}}  {value: .6g}" for term, value in zip(table["term"], table["coefficient"])),
    ]
    return "\n".join(lines) + "\n"
