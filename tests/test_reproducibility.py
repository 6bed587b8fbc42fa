"""The same code and params give the same bytes: `dvc repro` twice, and after a kill, agree on dvc.lock.

Runs the real pipeline in small temporary copies of the repository (the files
git tracks, a fresh `git init`, params shrunk to 3,000 customers, 2 tuning
iterations, 2 folds, 30 trees):

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
import yaml

from stage_runs import PYTHON, child_env, copy_tracked_files, edited_params, temp_files, write_params

# The stage that is running when the interrupted run is killed, and how long after it starts.
KILL_DURING_STAGE = "tune"
KILL_AFTER_SECONDS = 1.0


def small_repo_copy(root: Path) -> Path:
    """The tracked files (as they are now in the working tree) in a new git repository, small params."""
    copy_tracked_files(root)
    write_params(edited_params({}), root / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([PYTHON, "-m", "dvc", *args], cwd=root, env=child_env(PYTHONUNBUFFERED="1"),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def output_md5s(root: Path) -> dict[str, str]:
    """Every output path in dvc.lock with its md5."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def declared_outputs(root: Path) -> set[str]:
    """Every outs/metrics/plots path dvc.yaml's stages declare, with `${paths.x}` resolved."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    paths = {k: v for block in pipeline.get("vars", []) for k, v in block.get("paths", {}).items()}
    declared = set()
    for stage in pipeline["stages"].values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                name = entry if isinstance(entry, str) else next(iter(entry))
                for key, value in paths.items():
                    name = name.replace("${paths.%s}" % key, value)
                declared.add(name)
    return declared


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, str]:
    """A copy where `dvc repro` ran once without interruption: (its root, its dvc.lock)."""
    root = small_repo_copy(tmp_path_factory.mktemp("uninterrupted"))
    dvc(root, "repro")
    return root, (root / "dvc.lock").read_text()


def test_forced_rerun_reproduces_every_output_bit_for_bit(uninterrupted):
    root, first_lock = uninterrupted
    first = output_md5s(root)
    assert set(first) == declared_outputs(root)
    dvc(root, "repro", "--force")
    second = output_md5s(root)
    changed = {path: (first.get(path), md5) for path, md5 in second.items() if first.get(path) != md5}
    assert not changed, f"outputs differ between two runs of the same code and params: {changed}"
    assert second.keys() == first.keys()
    assert (root / "dvc.lock").read_text() == first_lock


def test_repro_killed_part_way_then_rerun_gives_the_uninterrupted_lock(uninterrupted, tmp_path):
    _, expected_lock = uninterrupted
    root = small_repo_copy(tmp_path / "repo")
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

    rerun = dvc(root, "repro")
    assert f"Running stage '{KILL_DURING_STAGE}'" in rerun.stdout
    assert (root / "dvc.lock").read_text() == expected_lock
    dvc(root, "status", "--quiet")  # exits 1 if any stage or output changed
    assert temp_files(root / "data") + temp_files(root / "models") + temp_files(root / "metrics") == []
