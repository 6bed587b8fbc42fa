"""Why a customer scored as they did: each feature's contribution to the model's log-odds of buying.

LightGBM: its own exact tree contributions (TreeSHAP, what `pred_contrib` gives), from
per-tree tables of LightGBM's vectors (stages.lib.evaluation.tree_contributions: within
rounding of `pred_contrib`, for the cost of one or two raw-score predicts; `pred_contrib`
itself where a table would not pay). The logistic regression: coefficient x transformed
value, summed over the terms a feature makes (a category's one-hot levels). For either
family the contributions of all features plus the bias add up to the model's raw
log-odds (`log_odds`), the score before calibration. `stages.predict --explain N` turns
the largest into reason codes; `evaluate` averages their size over the test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A contribution's direction as a reason shows it, indexed by its sign + 1.
DIRECTIONS = np.array(["-", "0", "+"], dtype=object)


def log_odds(model, features: pd.DataFrame, threads: int = 1) -> np.ndarray:
    """The model's raw score as log-odds: what the contributions add up to."""
    from lightgbm import LGBMClassifier  # not at the top: as in stages.lib.scoring.scorer.raw_scores

    if isinstance(model, LGBMClassifier):
        return model.booster_.predict(features, raw_score=True, num_threads=threads)
    return model.decision_function(features)


def _term_features(encode) -> list[str]:
    """The input feature each of a fitted ColumnTransformer's output terms comes from, in output order."""
    sources: list[str] = []
    for name, transformer, columns in encode.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        if hasattr(transformer, "categories_"):
            for column, levels, dropped in zip(columns, transformer.categories_, transformer.drop_idx_):
                sources += [column] * (len(levels) - (dropped is not None))
        else:
            sources += list(columns)
    return sources


def contributions(model, features: pd.DataFrame, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(rows x features contributions in log-odds, in `features`' column order; each row's bias)."""
    from lightgbm import LGBMClassifier  # not at the top: as in stages.lib.scoring.scorer.raw_scores

    if isinstance(model, LGBMClassifier):
        # Here, not at the top: it imports LightGBM, which scoring loads only with the model (tests/test_startup.py).
        from stages.lib.evaluation.tree_contributions import tree_contributions

        values = tree_contributions(model.booster_, features, threads)
        return values[:, :-1], values[:, -1]
    encode, classifier = model.named_steps["encode"], model.named_steps["classifier"]
    terms = np.asarray(encode.transform(features), dtype=np.float64) * classifier.coef_[0]
    position = {column: i for i, column in enumerate(features.columns)}
    grouping = np.zeros((terms.shape[1], features.shape[1]))
    grouping[np.arange(terms.shape[1]), [position[f] for f in _term_features(encode)]] = 1.0
    return terms @ grouping, np.full(len(features), float(classifier.intercept_[0]))


def _shown(column: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each of `rows`' code, each code's value as a person reads it: levels as they are, numbers to 4
    significant digits), so a value is formatted once however many rows hold it."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # the codes are there; a gap shows as `nan`
        levels = np.asarray(column.cat.categories.astype(str), dtype=object)
        codes = column.cat.codes.to_numpy()[rows].astype(np.int64)
        return np.where(codes < 0, len(levels), codes), np.append(levels, "nan")
    codes, distinct = pd.factorize(column.to_numpy(np.float64)[rows], use_na_sentinel=False)
    return codes, np.char.mod("%.4g", distinct).astype(object)


def _distinct(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of `keys`, each in 0..size-1, ascending; each key's position among them)."""
    present = np.zeros(size, dtype=bool)
    present[keys] = True
    return np.flatnonzero(present), (np.cumsum(present) - 1)[keys]


def reason_codes(values: np.ndarray, features: pd.DataFrame, count: int) -> pd.DataFrame:
    """For each row, the `count` features with the largest contributions by size, whichever way they pushed
    (ties: in column order), so a customer with a low score gets what kept it low: `reason_k` as
    `feature=value (+)` (`(-)` when it lowered the score) and `reason_k_contribution` in log-odds.

    By size rather than N up and N down: a list of N is what a reader weighs, and for most customers the
    strongest reasons all point one way (a likely buyer's up, an unlikely one's down)."""
    count = min(count, features.shape[1])
    top = largest_by_size(values, count)
    rows = np.arange(len(features))
    names = np.asarray(features.columns, dtype=object)
    reasons = {}
    for k in range(count):
        chosen = top[:, k]
        contribution = values[rows, chosen]
        text = np.empty(len(features), dtype=object)
        order = np.argsort(chosen, kind="stable")  # the rows of each chosen feature, together
        bounds = np.searchsorted(chosen[order], np.arange(features.shape[1] + 1))
        for feature in np.flatnonzero(np.diff(bounds)):
            mine = order[bounds[feature]:bounds[feature + 1]]
            codes, shown = _shown(features.iloc[:, feature], mine)
            # One text per distinct (value, direction) pair, then spread to the rows that have it.
            distinct, where = _distinct(codes * 3 + np.sign(contribution[mine]).astype(np.int64) + 1, 3 * len(shown))
            text[mine] = (names[feature] + "=" + shown[distinct // 3] + " (" + DIRECTIONS[distinct % 3] + ")")[where]
        reasons[f"reason_{k + 1}"] = text
        reasons[f"reason_{k + 1}_contribution"] = contribution
    return pd.DataFrame(reasons)


def largest_by_size(values: np.ndarray, count: int) -> np.ndarray:
    """Each row's `count` columns of largest absolute value, largest first, ties in column order: a stable
    sort's first `count`, found by `count` passes of argmax (the first of equal maxima) instead of sorting
    every column."""
    left = np.abs(values)
    rows = np.arange(len(left))
    top = np.empty((len(left), count), dtype=np.intp)
    for k in range(count):
        top[:, k] = np.argmax(left, axis=1)
        left[rows, top[:, k]] = -np.inf   # sizes are >= 0, so a taken column is never the max again
    return top


def empty_reasons(count: int) -> pd.DataFrame:
    """reason_codes' columns for no rows."""
    return pd.DataFrame({column: pd.Series(dtype=kind) for k in range(1, count + 1)
                         for column, kind in ((f"reason_{k}", object), (f"reason_{k}_contribution", np.float64))})


def mean_absolute_contributions(model, features: pd.DataFrame, threads: int = 1) -> pd.DataFrame:
    """Each feature's mean absolute contribution over the rows, largest first (6 significant digits)."""
    values, _ = contributions(model, features, threads)
    size = np.abs(values).mean(axis=0) if len(features) else np.zeros(features.shape[1])
    table = pd.DataFrame({"feature": list(features.columns),
                          "mean_abs_contribution": [float(f"{v:.6g}") for v in size]})
    return table.sort_values(["mean_abs_contribution", "feature"], ascending=[False, True]).reset_index(drop=True)
