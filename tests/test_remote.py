"""The team round trip: push from a reproduced repository, clone, pull the model only, score.

Once through a local directory remote (the committed default kind) and once
through S3 served by moto on 127.0.0.1: predictions in the clone must be
byte for byte those of the repository that trained the model.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from stages.lib.scoring.scorer import MODEL_FILES
from tests.helpers import child_env, copy_repo, dvc, free_port, git, python_module

pytestmark = pytest.mark.e2e

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
BUCKET = "propensity-test"


def score(repo: Path, customers: Path, output: Path, env=None) -> bytes:
    python_module("stages.predict", "--input", str(customers), "--output", str(output), cwd=repo, env=env)
    return output.read_bytes()


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def pull_model_and_score(origin: Path, clone: Path, customers: Path, output: Path, env=None,
                         remote_url: str | None = None) -> bytes:
    """Clone `origin`, pull only the four model files, score; returns the output bytes."""
    git("clone", "-q", str(origin), str(clone), cwd=origin.parent)
    if remote_url is not None:
        # A clone does not get .dvc/config.local: point it at the same remote, as a teammate would.
        dvc("remote", "modify", "--local", "local", "url", remote_url, cwd=clone)
    dvc("pull", *MODEL_FILES, cwd=clone, env=env)
    # The model only, no data: under data/ nothing but DVC's .gitignore files.
    assert all(Path(f).name == ".gitignore" for f in files_under(clone / "data")), files_under(clone / "data")
    assert files_under(clone / "models") == sorted([".gitignore", *(Path(f).name for f in MODEL_FILES)])
    return score(clone, customers, output, env)


def test_round_trip_through_a_local_directory_remote(reproduced_repo, customers_csv, tmp_path):
    origin = copy_repo(reproduced_repo, tmp_path / "origin")
    remote = tmp_path / "remote"  # does not exist yet: the first push creates it
    dvc("remote", "modify", "--local", "local", "url", str(remote), cwd=origin)
    expected = score(origin, customers_csv, tmp_path / "origin-scores.csv")
    dvc("push", cwd=origin)
    assert remote.is_dir() and any(remote.rglob("*"))

    pulled = pull_model_and_score(origin, tmp_path / "clone", customers_csv, tmp_path / "clone-scores.csv",
                                  remote_url=str(remote))
    assert pulled == expected


def test_round_trip_through_an_s3_compatible_server(reproduced_repo, customers_csv, tmp_path):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        env = child_env(**S3_ENV)

        origin = copy_repo(reproduced_repo, tmp_path / "origin")
        # As the README says: the S3 remote and its endpoint are committed, credentials never are.
        dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/dvc", cwd=origin)
        dvc("remote", "modify", "s3", "endpointurl", endpoint, cwd=origin)
        git("commit", "-q", "-am", "store the cache in S3", cwd=origin)
        config = (origin / ".dvc/config").read_text()
        assert "testing" not in config and "endpointurl" in config

        expected = score(origin, customers_csv, tmp_path / "origin-scores.csv", env)
        dvc("push", cwd=origin, env=env)
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix="dvc/").get("KeyCount", 0) > 0

        pulled = pull_model_and_score(origin, tmp_path / "clone", customers_csv, tmp_path / "clone-scores.csv",
                                      env=env)
        assert pulled == expected
    finally:
        server.stop()
