"""The Dask engine on worker processes: its final fit, and the stages under `dvc repro` on a cluster.

A real cluster here is a `dask scheduler` and two `dask worker` processes on
127.0.0.1, started by the test and stopped by it (only those processes).
"""

from __future__ import annotations

import pickle
import re

import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from stages.lib.core.files import read_json
from stages.lib.data.examples import parquet_parts_of
from stages.lib.data.schema import split_features
from stages.lib.data.split import preprocess_customers
from stages.lib.data.synthetic import generate_customers
from stages.lib.modeling.estimators import train_model
from tests.helpers import (
    copy_repo,
    customers_to_score,
    dvc,
    local_dask_engine,
    new_repo,
    output_md5s,
    python_module,
    recipe_of,
    running_cluster,
)

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def process_engine():
    with local_dask_engine(processes=True) as engine:
        yield engine


# --- the final fit: lightgbm.dask, data-parallel ------------------------------------------------------------

def test_training_on_dask_gives_the_same_model_every_time(engine, params, train_table, process_engine, tmp_path):
    folder = parquet_parts_of(train_table, tmp_path / "train.parquet", 3)
    best = {"learning_rate": 0.05, "num_leaves": 16}
    fits = [train_model(process_engine, folder, recipe_of(params), params.data.id_columns, best) for _ in range(2)]
    assert fits[0][1] == fits[1][1] == len(train_table)
    model = fits[0][0]
    assert isinstance(model, LGBMClassifier)
    assert pickle.dumps(model) == pickle.dumps(fits[1][0])  # model.joblib: the same bytes
    assert list(vars(model)) == sorted(vars(model))  # and in every process, whatever its string hashing
    text = model.booster_.model_to_string()
    assert "[machines: " not in text and "[local_listen_port: " not in text  # no run's ports in model.txt
    local, _ = train_model(engine, train_table, recipe_of(params), params.data.id_columns, best)
    assert model.feature_name_ == local.feature_name_
    assert model.booster_.pandas_categorical == local.booster_.pandas_categorical


def test_a_model_trained_on_dask_ranks_as_well_as_the_local_one(engine, params, process_engine, tmp_path):
    """Test average precision within 0.02 of the local model's, on 20,000 generated customers.

    The distributed fit bins each feature on one worker's rows, the local one on all: another,
    equally good model. The tests' 3,000 rows are too few to compare (two equally good models
    differ there by more than 0.02).
    """
    from sklearn.metrics import average_precision_score

    params = params.model_copy(update={
        "generate": params.generate.model_copy(update={"rows": 20_000}),
        "model": params.model.model_copy(update={"n_estimators": 300}),
    })
    customers, _ = generate_customers(params.generate, params.base.seed)
    train, test, _ = preprocess_customers(engine, customers, params.data, params.preprocess, params.base.seed)
    test_features, test_y = split_features(test, params.data.id_columns)
    best = {"learning_rate": 0.02, "num_leaves": 8, "min_child_samples": 100, "colsample_bytree": 0.6}
    local, _ = train_model(engine, train, recipe_of(params), params.data.id_columns, best)
    on_dask, rows = train_model(process_engine, parquet_parts_of(train, tmp_path / "train.parquet", 5),
                                recipe_of(params), params.data.id_columns, best)
    assert rows == len(train) and on_dask.booster_.num_trees() == 300
    scores = [average_precision_score(test_y, model.predict_proba(test_features)[:, 1]) for model in (local, on_dask)]
    assert abs(scores[1] - scores[0]) <= 0.02, scores


# --- the stages under dvc repro ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_repos(dask_cluster, tmp_path_factory):
    """A test repository reproduced with compute.engine dask (and nothing else changed) on one cluster, and a
    copy whose stages that run on the workers partition by partition (preprocess, resample, train) ran again."""
    first = new_repo(tmp_path_factory.mktemp("first") / "repo", {"compute.engine": "dask"})
    dvc("repro", cwd=first, env=dask_cluster.env())
    # tune, calibrate and evaluate are compared with the local engine's bytes by the test below.
    second = copy_repo(first, tmp_path_factory.mktemp("second") / "repo")
    dvc("repro", "--force", "--single-item", "preprocess", "resample", "train", cwd=second, env=dask_cluster.env())
    return [first, second]


@pytest.mark.e2e
def test_dvc_repro_on_a_dask_cluster_splits_preprocesses_and_tunes_as_the_local_engine(reproduced_repo, dask_repos):
    repo = dask_repos[0]
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(repo / f"data/processed/{split}.parquet"),
                                      pd.read_parquet(reproduced_repo / f"data/processed/{split}.parquet"))
    local, on_dask = output_md5s(reproduced_repo), output_md5s(repo)
    assert on_dask["models/preprocessor.joblib"] == local["models/preprocessor.joblib"]
    for name in ("metrics/tune.json", "metrics/plots/tune_trace.json", "models/best_params.json",
                 "metrics/calibrate.json"):
        assert read_json(repo / name) == read_json(reproduced_repo / name), name
    assert read_json(repo / "metrics/metrics.json")["baselines"] == \
        read_json(reproduced_repo / "metrics/metrics.json")["baselines"]


@pytest.mark.e2e
def test_two_runs_on_a_dask_cluster_give_the_same_dvc_lock(dask_repos):
    assert output_md5s(dask_repos[0]) == output_md5s(dask_repos[1])


@pytest.mark.e2e
def test_scoring_partitions_on_dask_gives_the_local_scores(reproduced_repo, dask_cluster, tmp_path):
    customers = customers_to_score(reproduced_repo, tmp_path / "customers.csv", rows=900)
    folder = parquet_parts_of(customers, tmp_path / "customers", parts=4)
    local, local_drift = tmp_path / "local.parquet", tmp_path / "local-drift.json"
    python_module("stages.predict", "--input", customers, "--output", local, "--explain", "2",
                  "--drift-report", local_drift, cwd=reproduced_repo)
    on_dask, dask_drift = tmp_path / "scores", tmp_path / "dask-drift.json"
    result = python_module("stages.predict", "--engine", "dask", "--input", folder / "*.parquet",
                           "--output", on_dask, "--explain", "2", "--drift-report", dask_drift,
                           cwd=reproduced_repo, env=dask_cluster.env())
    assert "scored 900 customers" in result.stdout
    # The output names the cluster that did the work.
    assert re.search(rf"^dask: on the Dask scheduler at {re.escape(dask_cluster.address)}: [1-9]\d* workers, "
                     r"[1-9]\d* threads$", result.stdout, re.MULTILINE), result.stdout
    assert sorted(p.name for p in on_dask.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    pd.testing.assert_frame_equal(pd.read_parquet(on_dask), pd.read_parquet(local))
    assert read_json(dask_drift) == read_json(local_drift)  # the same counts, added up over partitions
