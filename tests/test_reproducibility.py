"""The same code and params give the same bytes: `dvc repro` twice, and after a kill, agree on dvc.lock.

Runs the real pipeline in test repositories (tests/helpers.py: this project's code,
the tests' small params):

- `dvc repro` then `dvc repro --force` record the same md5 for every output in dvc.lock;
- `dvc repro` killed with SIGKILL (dvc and the running stage) part-way through,
  then run again, ends with exactly the dvc.lock of the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib.core.cores import local_workers
from tests.helpers import (
    child_env,
    copy_repo,
    declared_outputs,
    dvc,
    new_repo,
    output_md5s,
    repro_killed_during,
    temp_files,
)

pytestmark = pytest.mark.e2e

# The stage that is running when the interrupted run is killed, and how long after it starts.
KILL_DURING_STAGE = "tune"
KILL_AFTER_SECONDS = 1.0


@pytest.fixture(scope="module")
def uninterrupted(reproduced_repo, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the session's reproduced repository (one uninterrupted `dvc repro`): (root, its dvc.lock)."""
    root = copy_repo(reproduced_repo, tmp_path_factory.mktemp("uninterrupted") / "repo")
    return root, (root / "dvc.lock").read_text()


def test_forced_rerun_reproduces_every_output_bit_for_bit(uninterrupted):
    root, first_lock = uninterrupted
    first = output_md5s(root)
    assert set(first) == set(declared_outputs(root))
    dvc("repro", "--force", cwd=root)
    second = output_md5s(root)
    changed = {path: (first.get(path), md5) for path, md5 in second.items() if first.get(path) != md5}
    assert not changed, f"outputs differ between two runs of the same code and params: {changed}"
    assert second.keys() == first.keys()
    assert (root / "dvc.lock").read_text() == first_lock


def test_repro_killed_part_way_then_rerun_gives_the_uninterrupted_lock(uninterrupted, tmp_path):
    _, expected_lock = uninterrupted
    root = new_repo(tmp_path / "repo")
    repro_killed_during(root, KILL_DURING_STAGE, tmp_path / "killed-run.log", KILL_AFTER_SECONDS)
    assert not (root / "models" / "model.joblib").exists(), "the kill came after the pipeline had finished"

    rerun = dvc("repro", cwd=root)
    assert f"Running stage '{KILL_DURING_STAGE}'" in rerun.stdout
    assert (root / "dvc.lock").read_text() == expected_lock
    dvc("status", "--quiet", cwd=root)  # exits 1 if any stage or output changed
    assert temp_files(root / "data") + temp_files(root / "models") + temp_files(root / "metrics") == []


def test_the_model_stages_give_the_same_bytes_with_one_two_or_three_workers(reproduced_repo, tmp_path):
    """How many fits run at once, and the threads inside each (model.threads: auto), follow the machine;
    the outputs do not. PROPENSITY_WORKERS stands in for a machine of 1, 2 or 3 cores."""
    expected = output_md5s(reproduced_repo)
    # reproduced_repo ran with the local engine's own count; that one needs no second run.
    for workers in sorted({1, 2, 3} - {local_workers()}):
        root = copy_repo(reproduced_repo, tmp_path / f"workers-{workers}")
        dvc("repro", "--force", "--single-item", "tune", "calibrate", "train", "evaluate", cwd=root,
            env=child_env(PROPENSITY_WORKERS=str(workers)))
        changed = {path for path, md5 in output_md5s(root).items() if expected[path] != md5}
        assert not changed, f"{workers} workers changed {sorted(changed)}"
