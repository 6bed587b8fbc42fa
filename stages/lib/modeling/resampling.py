"""Oversampling buyers with SMOTE and its variants, as a table step and as a pipeline step.

`resample_training` is the resample stage's work on the training split;
`make_resampler` puts the same `oversample` inside an imbalanced-learn Pipeline,
where it runs only while fitting, so in cross-validation it sees each training
fold and never a validation fold.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stages.lib.core.errors import DataError
from stages.lib.core.params_model import ResampleParams
from stages.lib.core.tables import write_table
from stages.lib.data.sampling import class_counts
from stages.lib.data.schema import LABEL, SNAPSHOT, SYNTHETIC, categorical_columns_of, split_features
from stages.lib.engines.base import Engine

if TYPE_CHECKING:
    from imblearn import FunctionSampler
    from sklearn.neighbors import NearestNeighbors

# Each method's sampler class in imblearn.over_sampling, by name: imbalanced-learn and scikit-learn load
# only when rows are oversampled, so `resample.method: none` (the committed one) copies the split without them.
OVERSAMPLERS = {"smote": "SMOTE", "smotenc": "SMOTENC", "borderline_smote": "BorderlineSMOTE", "adasyn": "ADASYN"}


def check_minority_size(minority: int, resample: ResampleParams, where: str) -> None:
    """SMOTE-family samplers need k_neighbors + 1 minority rows in every table they see."""
    if resample.method not in OVERSAMPLERS:
        return
    if minority < resample.k_neighbors + 1:
        raise DataError(
            f"{where}: {minority} buyer rows, but resample.k_neighbors={resample.k_neighbors} needs at least "
            f"{resample.k_neighbors + 1}; set resample.k_neighbors to at most {max(minority - 1, 1)} "
            "or use more data"
        )


def _neighbours(k: int, method: str) -> NearestNeighbors:
    """The k nearest other rows (each row is its own nearest), found with a k-d tree.

    imbalanced-learn's default search is brute force for more than 15 columns: all
    pairs of buyers, which grows with the square of the buyers. A k-d tree returns
    the same neighbours, ties in the same order, in about n log n (the resampled
    tables of every method are identical; benchmarks/README.md has the timings).
    SMOTENC searches one-hot (sparse) rows, where no tree applies.
    """
    from sklearn.neighbors import NearestNeighbors  # only when oversampling (OVERSAMPLERS says why)

    return NearestNeighbors(n_neighbors=k + 1, algorithm="auto" if method == "smotenc" else "kd_tree")


def oversample(features: pd.DataFrame, y: np.ndarray, method: str, k_neighbors: int,
               sampling_strategy: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Oversample the buyers; original rows come first, synthetic rows after them.

    Categorical columns are resampled as codes: SMOTENC draws them from the
    neighbours; the other methods interpolate, so their codes are rounded back
    to a level that exists.
    """
    from imblearn import over_sampling  # only when oversampling (OVERSAMPLERS says why)

    categorical = categorical_columns_of(features)
    numeric = [c for c in features.columns if c not in set(categorical)]
    matrix = np.empty((len(features), features.shape[1]), dtype=np.float64)
    for i, column in enumerate(features.columns):
        series = features[column]
        matrix[:, i] = series.cat.codes if column in categorical else series.to_numpy(np.float64)
    sampler_cls = getattr(over_sampling, OVERSAMPLERS[method])
    options: dict[str, Any] = {"random_state": seed, "sampling_strategy": sampling_strategy}
    if method == "adasyn":
        options["n_neighbors"] = _neighbours(k_neighbors, method)
    else:
        options["k_neighbors"] = _neighbours(k_neighbors, method)
    if method == "borderline_smote":
        options["m_neighbors"] = _neighbours(over_sampling.BorderlineSMOTE().m_neighbors, method)
    if method == "smotenc":
        if not categorical or not numeric:
            raise DataError(
                "resample.method smotenc needs both categorical and numeric columns; "
                "use resample.method: smote"
            )
        options["categorical_features"] = [features.columns.get_loc(c) for c in categorical]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            resampled, y_resampled = sampler_cls(**options).fit_resample(matrix, y)
        except ValueError as error:
            raise DataError(f"resample.method {method} failed: {str(error).splitlines()[0]}; "
                            "try resample.method: smote or a lower resample.sampling_strategy") from None
    out = {}
    for i, column in enumerate(features.columns):
        values = resampled[:, i]
        if column in categorical:
            levels = features[column].cat.categories
            codes = np.clip(np.rint(values), 0, len(levels) - 1).astype(np.int32)
            out[column] = pd.Categorical.from_codes(codes, categories=levels)
        else:
            out[column] = values.astype(features[column].dtype)
    return pd.DataFrame(out), np.asarray(y_resampled, dtype=np.int8)


def make_resampler(resample: ResampleParams, seed: int) -> FunctionSampler | None:
    """The resampler for an imbalanced-learn Pipeline; None when nothing is resampled."""
    if resample.method not in OVERSAMPLERS:
        return None
    from imblearn import FunctionSampler  # only when oversampling (OVERSAMPLERS says why)

    return FunctionSampler(
        func=oversample,
        validate=False,
        kw_args={"method": resample.method, "k_neighbors": resample.k_neighbors,
                 "sampling_strategy": resample.sampling_strategy, "seed": seed},
    )


def counts_report(y: np.ndarray) -> dict[str, int]:
    """metrics/resample.json's class counts of a table's labels."""
    counts = class_counts(y)
    return {"buyers": counts[1], "non_buyers": counts[0], "rows": counts[0] + counts[1]}


def resample_training(train: pd.DataFrame, resample: ResampleParams, seed: int,
                      id_columns: list[str], source: str = "training split") -> tuple[pd.DataFrame, dict]:
    """Return (resampled table, report of class counts before and after).

    Synthetic rows have empty IDs and `SYNTHETIC` set; `none` and `class_weight`
    return the training split unchanged.
    """
    features, y = split_features(train, id_columns, source)
    check_minority_size(int(min(y.sum(), len(y) - y.sum())), resample, source)
    if resample.method in OVERSAMPLERS:
        features_out, y_out = oversample(features, y, resample.method, resample.k_neighbors,
                                         resample.sampling_strategy, seed)
    else:
        features_out, y_out = features.reset_index(drop=True), y
    n_original, n_out = len(train), len(features_out)
    # IDs (and snapshot dates) of the original rows; synthetic rows have none.
    kept = list(id_columns) + ([SNAPSHOT] if SNAPSHOT in train.columns else [])
    ids = train[kept].reset_index(drop=True).reindex(range(n_out))
    for column in id_columns:
        if pd.api.types.is_integer_dtype(train[column]):
            ids[column] = ids[column].astype("Int64")
    synthetic = np.arange(n_out) >= n_original
    table = pd.concat([ids, features_out, pd.DataFrame({LABEL: y_out, SYNTHETIC: synthetic})], axis=1)
    report = {
        "method": resample.method,
        "before": counts_report(y),
        "after": counts_report(y_out),
        "synthetic_rows": int(synthetic.sum()),
    }
    return table, report


def _unchanged(frame: pd.DataFrame, offset: int, resample: ResampleParams, seed: int,
               id_columns: list[str]) -> tuple[tuple[pd.DataFrame], dict]:
    table, report = resample_training(frame, resample, seed, id_columns)
    return (table,), report


def resample_split(engine: Engine, path: str | Path, output: str | Path, resample: ResampleParams, seed: int,
                   id_columns: list[str]) -> dict:
    """`resample_training` of the training split at `path`, written to `output`; returns the report.

    A method that keeps the rows (none, class_weight) runs partition by partition on the engine; the
    SMOTE family needs every buyer in one table, so the split is gathered into this process.
    """
    if resample.method in OVERSAMPLERS:
        table, report = resample_training(engine.gather(path), resample, seed, id_columns, str(path))
        write_table(table, output)
        return report
    reports = engine.write(_unchanged, path, [output], resample, seed, id_columns)
    added = {side: {key: sum(report[side][key] for report in reports) for key in reports[0][side]}
             for side in ("before", "after")}
    return {"method": resample.method, **added, "synthetic_rows": 0}
