"""The same code and params give the same bytes: `dvc repro` twice, and after a kill, agree on dvc.lock.

Runs the real pipeline in test repositories (tests/helpers.py: this project's code,
the tests' small params):

- `dvc repro` then `dvc repro --force` record the same md5 for every output in dvc.lock;
- `dvc repro` killed with SIGKILL (dvc and the running stage) part-way through,
  then run again, ends with exactly the dvc.lock of the uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import PYTHON, child_env, copy_repo, declared_outputs, dvc, new_repo, output_md5s, temp_files

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
    log = tmp_path / "killed-run.log"
    with open(log, "w") as handle:
        # Its own session, so the kill reaches dvc and the stage it runs, as a lost machine would.
        run = subprocess.Popen([PYTHON, "-m", "dvc", "repro"], cwd=root, env=child_env(PYTHONUNBUFFERED="1"),
                               stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while f"Running stage '{KILL_DURING_STAGE}'" not in log.read_text():
                assert run.poll() is None, f"dvc repro ended before stage {KILL_DURING_STAGE}:\n{log.read_text()}"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(KILL_AFTER_SECONDS)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert not (root / "models" / "model.joblib").exists(), "the kill came after the pipeline had finished"

    rerun = dvc("repro", cwd=root)
    assert f"Running stage '{KILL_DURING_STAGE}'" in rerun.stdout
    assert (root / "dvc.lock").read_text() == expected_lock
    dvc("status", "--quiet", cwd=root)  # exits 1 if any stage or output changed
    assert temp_files(root / "data") + temp_files(root / "models") + temp_files(root / "metrics") == []
