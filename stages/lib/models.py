"""The estimators the model stages share: LightGBM, the resampling pipeline, cross-validation rows.

`tune`, `calibrate` and `train` build their models here, so cross-validation,
out-of-fold predictions and the final fit use the same objects. The resampler
sits inside an imbalanced-learn Pipeline: it runs only while fitting, so in
cross-validation it sees each training fold and never a validation fold.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline
from lightgbm import Booster, LGBMClassifier, early_stopping
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

from stages.lib import resampling
from stages.lib.compute import dask_client, model_threads, tree_reduce
from stages.lib.errors import DataError
from stages.lib.hashing import row_numbers, seeded_hash
from stages.lib.params import ModelParams, Params, ResampleParams
from stages.lib.schema import LABEL, feature_columns_of, split_features
from stages.lib.tables import (
    READ_ERRORS,
    is_partitioned,
    parquet_rows,
    read_table,
    unreadable_on_cluster,
    worker_parts,
)


def stratified_sample(features: pd.DataFrame, y: np.ndarray, rows: int | None,
                      seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `rows` rows with the class ratio kept (all rows if rows is None or larger)."""
    if rows is None or rows >= len(y):
        return features, y
    keep, _ = train_test_split(np.arange(len(y)), train_size=rows, stratify=y, random_state=seed)
    keep = np.sort(keep)
    return features.iloc[keep], y[keep]


def _parts_and_offsets(path: str | Path) -> tuple[list[Path], list[int], int]:
    """A partitioned table's files (for the workers), the number in the whole table of each file's
    first row, and the table's rows, from the files' footers."""
    import dask

    parts = worker_parts(path)
    try:
        lengths = dask.compute(*[dask.delayed(parquet_rows)(part) for part in parts])
    except READ_ERRORS as error:
        raise unreadable_on_cluster(path, error) from None
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
    return parts, offsets, int(sum(lengths))


def _keys_of(labels: pd.Series, offset: int, seed: int) -> pd.DataFrame:
    """Each row's seeded hash (of its number in the whole table) and label."""
    return pd.DataFrame({"key": seeded_hash(row_numbers(offset, len(labels)), seed),
                         LABEL: labels.to_numpy(np.int8)})


def _sample_keys(part: Path, offset: int, seed: int) -> pd.DataFrame:
    """`_keys_of` one file's rows, from its label column alone."""
    return _keys_of(pd.read_parquet(part, columns=[LABEL])[LABEL], offset, seed)


def _class_counts(keys: pd.DataFrame) -> pd.Series:
    return keys[LABEL].value_counts()


def _smallest_keys(keys: pd.DataFrame, quotas: dict[int, int]) -> dict[int, np.ndarray]:
    """Each class's `quota` smallest hashes among `keys` (so among several files' keys, once added up)."""
    return {label: np.sort(keys.loc[keys[LABEL] == label, "key"].to_numpy())[:quota] for label, quota in quotas.items()}


def _merged_smallest(pieces: list[dict[int, np.ndarray]], quotas: dict[int, int]) -> dict[int, np.ndarray]:
    return {label: np.sort(np.concatenate([piece[label] for piece in pieces]))[:quota]
            for label, quota in quotas.items()}


def _kept_rows(part: Path, offset: int, seed: int, cutoffs: dict[int, int]) -> pd.DataFrame:
    """The rows of one file whose hash is at most their class's cutoff."""
    frame = pd.read_parquet(part)
    keys = _keys_of(frame[LABEL], offset, seed) if len(frame) else pd.DataFrame({"key": [], LABEL: []})
    keep = np.zeros(len(frame), dtype=bool)
    for label, cutoff in cutoffs.items():
        keep |= (keys[LABEL].to_numpy() == label) & (keys["key"].to_numpy() <= np.uint64(cutoff))
    return frame[keep]


def sample_on_dask(path: str | Path, rows: int, seed: int) -> pd.DataFrame:
    """A stratified sample of `rows` rows of a partitioned processed table (a directory or glob of
    parquet files), in table order, chosen on the Dask cluster of the current client.

    Each class keeps its share of the rows (rounded): the rows of that class with the smallest
    seeded hashes of their row numbers in the whole table (a bijection: no ties), so the sample
    does not depend on how the table is cut into files. The workers read each file's label column
    to choose and send back only the rows kept. A table of at most `rows` rows comes back whole.
    """
    import dask

    parts, offsets, _ = _parts_and_offsets(path)
    keys = [dask.delayed(_sample_keys)(part, offset, seed) for part, offset in zip(parts, offsets)]
    counts = pd.concat(dask.compute(*[dask.delayed(_class_counts)(k) for k in keys])).groupby(level=0).sum()
    total, buyers = int(counts.sum()), int(counts.get(1, 0))
    if rows >= total:
        quotas = {1: buyers, 0: total - buyers}
    else:
        keep_buyers = min(buyers, round(rows * buyers / total))
        quotas = {1: keep_buyers, 0: rows - keep_buyers}
    smallest = [dask.delayed(_smallest_keys)(k, quotas) for k in keys]
    chosen = tree_reduce(smallest, functools.partial(_merged_smallest, quotas=quotas)).compute()
    cutoffs = {label: int(values[-1]) for label, values in chosen.items() if len(values)}
    kept = [dask.delayed(_kept_rows)(part, offset, seed, cutoffs) for part, offset in zip(parts, offsets)]
    return pd.concat(dask.compute(*kept), ignore_index=True)


def training_rows(path: str | Path, params: Params, rows: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and labels of a processed split: all rows, or with `rows` a stratified sample of them.

    compute.engine dask with a partitioned split (preprocess wrote it on the cluster): the sample is
    chosen on the cluster (sample_on_dask), so this process never holds the whole split. Otherwise the
    split is read whole and the caller samples it (stratified_sample).
    """
    if rows is not None and params.compute.engine == "dask" and is_partitioned(path):
        with dask_client():
            table = sample_on_dask(path, rows, params.base.seed)
    else:
        table = read_table(path)
    return split_features(table, params.data.id_columns, str(path))


def check_fold_sizes(y: np.ndarray, folds: StratifiedKFold, resample: ResampleParams, key: str,
                     where: str) -> None:
    """Before a cross-validation starts: every fold needs a buyer, every training fold enough for SMOTE."""
    buyers = int(np.sum(y == 1))
    if buyers < folds.n_splits:
        raise DataError(
            f"{where}: {buyers} buyer rows cannot fill {key}={folds.n_splits} folds; "
            f"set {key} to at most {max(buyers, 2)} or use more data"
        )
    smallest = min(int(np.sum(y[train] == 1)) for train, _ in folds.split(np.zeros(len(y)), y))
    resampling.check_minority_size(smallest, resample, f"{where}, the smallest of {folds.n_splits} training folds")


def check_early_stopping_rows(y: np.ndarray, folds: StratifiedKFold, resample: ResampleParams,
                              where: str) -> None:
    """Early stopping holds out EARLY_STOPPING_HOLDOUT of each training fold: both parts need buyers."""
    smallest = min(int(np.sum(y[train] == 1)) for train, _ in folds.split(np.zeros(len(y)), y))
    held_out = math.ceil(smallest * EARLY_STOPPING_HOLDOUT)
    needed = math.ceil(1 / EARLY_STOPPING_HOLDOUT)
    if smallest < needed:
        raise DataError(
            f"{where}: the smallest training fold has {smallest} buyer rows, but tune.early_stopping_rounds "
            f"holds out {EARLY_STOPPING_HOLDOUT:.0%} of them and needs at least {needed}; "
            "set tune.early_stopping_rounds: null or use more data"
        )
    resampling.check_minority_size(smallest - held_out, resample,
                        f"{where}, the smallest training fold less its early-stopping rows")


def make_classifier(model: ModelParams, resample: ResampleParams, seed: int,
                    tuned: dict[str, Any] | None = None) -> LGBMClassifier:
    """LightGBM with the fixed params, the tuned ones, and determinism switched on."""
    settings: dict[str, Any] = {
        "n_estimators": model.n_estimators,
        # Always explicit: LightGBM ignores OMP_NUM_THREADS. `auto`: the usable cores.
        "n_jobs": model_threads(model),
        "random_state": seed,
        # Same data, params and thread count give the same trees, bit for bit.
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }
    if resample.method == "class_weight":
        settings["is_unbalance"] = True
    settings.update(tuned or {})
    return LGBMClassifier(**settings)


# Share of an early-stopping fit's rows held out to decide when to stop.
EARLY_STOPPING_HOLDOUT = 0.1
# LightGBM's name for each tuning score it can follow tree by tree; the rest follow log loss.
EARLY_STOPPING_METRICS = {"average_precision": "average_precision", "roc_auc": "auc"}


class EarlyStoppingClassifier(LGBMClassifier):
    """LightGBM that stops adding trees once a held-out slice of its own rows stops improving.

    Used by `tune` only (tune.early_stopping_rounds). The slice, a stratified
    EARLY_STOPPING_HOLDOUT of the rows passed to fit, is cut before resampling,
    so it holds real customers only, and it comes out of the training fold, so
    the fold being scored is never seen. The rest is oversampled as the
    pipeline's resampler would, then trained on; prediction uses the best
    iteration. Same rows and params give the same trees.
    """

    def __init__(self, early_stopping_rounds: int = 30, stopping_metric: str = "binary_logloss",
                 resample_method: str = "none", k_neighbors: int = 5, sampling_strategy: float = 1.0,
                 **kwargs):
        self.early_stopping_rounds = early_stopping_rounds
        self.stopping_metric = stopping_metric
        self.resample_method = resample_method
        self.k_neighbors = k_neighbors
        self.sampling_strategy = sampling_strategy
        super().__init__(**kwargs)

    def fit(self, X: pd.DataFrame, y: np.ndarray, **fit_params) -> EarlyStoppingClassifier:
        y = np.asarray(y)
        fit_rows, held_out = train_test_split(np.arange(len(y)), test_size=EARLY_STOPPING_HOLDOUT, stratify=y,
                                              random_state=self.random_state)
        # Sorted: the rows keep their order, so the result does not depend on the split's shuffle.
        fit_rows, held_out = np.sort(fit_rows), np.sort(held_out)
        X_fit, y_fit = X.iloc[fit_rows], y[fit_rows]
        if self.resample_method in resampling.OVERSAMPLERS:
            X_fit, y_fit = resampling.oversample(X_fit, y_fit, self.resample_method, self.k_neighbors,
                                                  self.sampling_strategy, self.random_state)
        return super().fit(
            X_fit, y_fit, eval_X=(X.iloc[held_out],), eval_y=(y[held_out],), eval_metric=self.stopping_metric,
            callbacks=[early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)],
            **fit_params,
        )


def make_early_stopping_pipeline(model: ModelParams, resample: ResampleParams, seed: int, rounds: int,
                                 scoring: str) -> Pipeline:
    """The tuning pipeline with early stopping: the classifier resamples its own rows."""
    classifier = make_classifier(model, resample, seed)
    return Pipeline([
        ("resample", "passthrough"),
        ("model", EarlyStoppingClassifier(
            early_stopping_rounds=rounds, stopping_metric=EARLY_STOPPING_METRICS.get(scoring, "binary_logloss"),
            resample_method=resample.method, k_neighbors=resample.k_neighbors,
            sampling_strategy=resample.sampling_strategy, **classifier.get_params())),
    ])


def make_pipeline(model: ModelParams, resample: ResampleParams, seed: int,
                  tuned: dict[str, Any] | None = None) -> Pipeline:
    """Resampler (or passthrough) followed by LightGBM; tuned keys are model params."""
    sampler = resampling.make_resampler(resample, seed)
    return Pipeline([
        ("resample", sampler if sampler is not None else "passthrough"),
        ("model", make_classifier(model, resample, seed, tuned)),
    ])


def out_of_fold_scores(features: pd.DataFrame, y: np.ndarray, params: Params, best_params: dict) -> np.ndarray:
    """Every row's score from a model fitted (and resampled) on the other folds."""
    folds = StratifiedKFold(n_splits=params.calibration.cv_folds, shuffle=True, random_state=params.base.seed)
    check_fold_sizes(y, folds, params.resample, "calibration.cv_folds", "calibration rows")
    pipeline = make_pipeline(params.model, params.resample, params.base.seed, best_params)
    return cross_val_predict(pipeline, features, y, cv=folds, method="predict_proba")[:, 1]


def train_model(features: pd.DataFrame, y: np.ndarray, params: Params, best_params: dict) -> LGBMClassifier:
    """The final model: LightGBM on the (resampled) training rows with the tuned params.

    compute.engine dask: lightgbm.dask on the cluster (train_on_dask), returned as a plain LGBMClassifier.
    """
    if params.compute.engine == "dask":
        with dask_client() as client:
            return train_on_dask(features, y, params, best_params, client)
    classifier = make_classifier(params.model, params.resample, params.base.seed, best_params)
    return classifier.fit(features, y)


class _RankedClient:
    """A distributed Client whose who_has() lists the data in partition order.

    lightgbm.dask (4.7.0) gives LightGBM's machine ranks in the order of
    Client.who_has(), which distributed does not keep from run to run; rank 0
    then differs, and so does the model. In partition order, the worker holding
    partition 0 is rank 0 every time.
    """

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def who_has(self, futures=None, **kwargs):
        found = self._client.who_has(futures, **kwargs)
        return {future.key: sorted(found[future.key]) for future in futures}


def dask_partitions(features: pd.DataFrame, y: np.ndarray, parts: int, seed: int) -> list[pd.DataFrame]:
    """The rows, shuffled with the seed, cut into `parts` frames of features plus a LABEL column.

    Shuffled: each LightGBM machine finds its bins on its own rows, so every
    partition must look like the whole table, not one end of it. Every
    categorical column keeps the whole table's categories in every partition
    (else LightGBM silently keeps one partition's levels).
    """
    order = np.random.default_rng(seed).permutation(len(y))
    table = features.reset_index(drop=True).assign(**{LABEL: np.asarray(y)})
    frames = []
    for rows in np.array_split(order, parts):
        frame = table.iloc[np.sort(rows)].reset_index(drop=True)
        for column in table.columns:
            if isinstance(table[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].cat.set_categories(table[column].cat.categories)
        frames.append(frame)
    return frames


def train_on_dask(features: pd.DataFrame, y: np.ndarray, params: Params, best_params: dict,
                  client) -> LGBMClassifier:
    """lightgbm.dask.DaskLGBMClassifier on the cluster, one partition per worker, as a plain LGBMClassifier.

    Partitions are pinned to workers (sorted by address) and ranked in partition
    order, so the same data, params and cluster size give the same model; a
    cluster of another size gives another, equally good one (the machines split
    the rows differently).
    """
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    frames = dask_partitions(features, y, len(workers), params.base.seed)
    futures = [client.scatter(frame, workers=[worker], broadcast=False, hash=False)
               for frame, worker in zip(frames, workers)]
    return _fit_on_workers(futures, frames[0].iloc[:0], list(features.columns), params, best_params, client)


def _rows_by_worker(part: Path, offset: int, seed: int, workers: int) -> list[pd.DataFrame]:
    """One file's rows cut by the worker that trains on them: a seeded hash of each row's number."""
    frame = pd.read_parquet(part)
    which = seeded_hash(row_numbers(offset, len(frame)), seed) % np.uint64(workers)
    return [frame[which == worker].reset_index(drop=True) for worker in range(workers)]


def _worker_partition(pieces: list[pd.DataFrame], categories: dict[str, pd.Index]) -> pd.DataFrame:
    """A worker's rows from every file, in table order, every categorical with the first file's levels."""
    frame = pd.concat(pieces, ignore_index=True)
    for column, levels in categories.items():
        frame[column] = frame[column].cat.set_categories(levels)
    return frame


def train_on_dask_from_files(path: str | Path, params: Params, best_params: dict,
                             client) -> tuple[LGBMClassifier, int]:
    """train_on_dask for a partitioned training table (preprocess and resample wrote it on the cluster),
    read by the workers: no process holds the whole table. Returns (model, rows trained on).

    Each row goes to the worker a seeded hash of its number in the whole table names, so every
    worker's rows are a random share of the table (LightGBM bins each feature on them); each worker
    gets its rows from every file, in table order, and the model is the same for the same files,
    params and cluster size.
    """
    import dask

    parts, offsets, rows = _parts_and_offsets(path)
    first = pd.read_parquet(parts[0])
    categories = {c: first[c].cat.categories for c in first.columns if isinstance(first[c].dtype, pd.CategoricalDtype)}
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    cuts = [dask.delayed(_rows_by_worker, nout=len(workers))(part, offset, params.base.seed, len(workers))
            for part, offset in zip(parts, offsets)]
    futures = [client.compute(dask.delayed(_worker_partition)([cut[number] for cut in cuts], categories),
                              workers=[worker], allow_other_workers=False)
               for number, worker in enumerate(workers)]
    columns = feature_columns_of(first, params.data.id_columns)
    model = _fit_on_workers(futures, first.iloc[:0], columns, params, best_params, client)
    return model, rows


def _fit_on_workers(futures: list, meta: pd.DataFrame, columns: list[str], params: Params, best_params: dict,
                    client) -> LGBMClassifier:
    """Fit DaskLGBMClassifier on partitions already on their workers (one each, in worker order) and
    return it as a plain, run-independent LGBMClassifier."""
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier

    table = dd.from_delayed(futures, meta=meta, verify_meta=False)
    local = make_classifier(params.model, params.resample, params.base.seed, best_params)
    # lightgbm.dask gives each worker's LightGBM that worker's Dask threads (num_threads): n_jobs is not passed.
    settings = {k: v for k, v in local.get_params().items() if k != "n_jobs"}
    model = DaskLGBMClassifier(client=_RankedClient(client), **settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(table[columns], table[LABEL])
    # The saved model predicts (evaluate) with the threads a local model would have.
    fitted = model.to_local().set_params(n_jobs=local.n_jobs)
    fitted._Booster = _without_network_params(fitted.booster_)
    for name in NETWORK_ATTRIBUTES:
        vars(fitted).pop(name, None)
        fitted._other_params.pop(name, None)
    # to_local() sets the extra attributes in the order of a set of names, which changes with Python's
    # string hashing from process to process; pickled in that order, model.joblib would too.
    fitted.__dict__ = dict(sorted(vars(fitted).items()))
    return fitted


# Parameters lightgbm.dask sets per run (random ports): not part of the model, and they would
# make model.txt and model.joblib differ between identical fits.
NETWORK_ATTRIBUTES = ("machines", "local_listen_port")
NETWORK_PARAMS = tuple(f"[{name}: " for name in NETWORK_ATTRIBUTES)


def _without_network_params(booster: Booster) -> Booster:
    text = booster.model_to_string()
    return Booster(model_str="\n".join(line for line in text.split("\n") if not line.startswith(NETWORK_PARAMS)))
