"""`dvc repro` on the Dask engine with no scheduler named: each stage starts a LocalCluster of this machine,
reads a partitioned table and writes partitioned splits, quietly; the local engine takes the same repository back."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.lib.core.files import read_json
from stages.lib.data.examples import parquet_parts_of
from tests.helpers import dvc, edit_params_file, new_repo

pytestmark = pytest.mark.dask

LIGHTGBM_CHATTER = ("[LightGBM]", "Finding random open ports")


@pytest.mark.e2e
def test_dvc_repro_on_dask_runs_a_partitioned_table_quietly_and_the_local_engine_takes_it_back(
        reproduced_repo, tmp_path):
    # No DASK_SCHEDULER_ADDRESS: each stage starts a LocalCluster on this machine's cores.
    repo = new_repo(tmp_path / "repo", {"compute.engine": "dask", "data.path": "data/export", "resample.method": "none",
                                        "tune.sample_rows": 1500, "calibration.sample_rows": 1800,
                                        "evaluate.baseline_sample_rows": 1000})
    parquet_parts_of(reproduced_repo / "data/raw/customers.csv", repo / "data/export", parts=3)
    result = dvc("repro", cwd=repo)
    chatter = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(LIGHTGBM_CHATTER)]
    assert not chatter, chatter
    for folder in (repo / "data/processed/train.parquet", repo / "data/processed/test.parquet",
                   repo / "data/resampled/train.parquet"):
        assert sorted(p.name for p in folder.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    # The same test customers as the local engine's run on the same table and seed.
    assert set(pd.read_parquet(repo / "data/processed/test.parquet")["customer_id"]) == \
        set(pd.read_parquet(reproduced_repo / "data/processed/test.parquet")["customer_id"])
    assert read_json(repo / "metrics/tune.json")["rows"] == 1500
    assert read_json(repo / "metrics/calibrate.json")["rows"] == 1800
    metrics = read_json(repo / "metrics/metrics.json")
    assert metrics["average_precision"] > 2 * metrics["actual_buyers"] / metrics["test_rows"]  # random: the buyer share
    assert set(metrics["baselines"]) == {"logistic_regression", "default_lightgbm"}
    assert "up to date" in dvc("status", cwd=repo).stdout
    # The local engine reads the same files in one process and writes the splits as files again.
    edit_params_file(repo / "params.yaml", {"compute.engine": "local"})
    dvc("repro", cwd=repo)
    assert (repo / "data/processed/train.parquet").is_file() and (repo / "data/processed/test.parquet").is_file()
    assert "up to date" in dvc("status", cwd=repo).stdout
