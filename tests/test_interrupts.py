"""A stage killed at any moment leaves the previous complete output or a complete new one, never half.

`python -m stages.generate` writing a 300,000-row CSV (about 30 MB) is started
as a subprocess and killed: at fixed times (while it loads its libraries or
computes) and while its temporary file is being written. Afterwards each output
is either the earlier run's file, byte for byte, or a complete new file with
every row. The next successful run removes leftover temporary files. SIGTERM and
Ctrl-C (SIGINT) stop the stage with exit code 130 and one short line, no traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.lib.core.cli import EXIT_INTERRUPTED, INTERRUPTED_MESSAGE
from stages.lib.core.tables import read_table
from tests.helpers import edited_params, python_module, start_module, temp_files, write_params

BIG_ROWS = 300_000
PREVIOUS_ROWS = 2_000
OUTPUT_NAMES = ("customers.csv", "true_probability.parquet")


class Generate:
    """The generate stage's command line in one folder, with small and big params."""

    def __init__(self, root: Path):
        self.out = root / "out"
        self.small = write_params(edited_params({"generate.rows": PREVIOUS_ROWS}), root / "small.yaml")
        self.big = write_params(edited_params({"generate.rows": BIG_ROWS}), root / "big.yaml")

    def args(self, params: Path) -> list:
        return ["--params", params, "--output", self.out / OUTPUT_NAMES[0],
                "--probabilities", self.out / OUTPUT_NAMES[1]]

    def outputs(self) -> list[Path]:
        return [self.out / name for name in OUTPUT_NAMES]

    def run(self, params: Path) -> subprocess.CompletedProcess:
        return python_module("stages.generate", *self.args(params), check=False)

    def start(self) -> subprocess.Popen:
        return start_module("stages.generate", *self.args(self.big))


def wait_until_writing(process: subprocess.Popen, folder: Path, timeout: float = 120) -> Path | None:
    """The temporary file of an atomic write once it holds data, or None if the process ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        for tmp in temp_files(folder):
            try:
                if tmp.stat().st_size > 0:
                    return tmp
            except FileNotFoundError:  # renamed into place between listing and stat
                pass
        time.sleep(0.001)
    return None


def wait_until_importing(process: subprocess.Popen, timeout: float = 60) -> bool:
    """True once the stage is loading its libraries (numpy mapped), past the interpreter's own start."""
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if "numpy" in maps.read_text():
                return True
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        time.sleep(0.005)
    return False


def assert_previous_or_complete(outputs: list[Path], previous: dict[Path, bytes]) -> None:
    for path in outputs:
        if not path.exists():
            raise AssertionError(f"{path} vanished; the earlier complete file must stay")
        if path.read_bytes() == previous[path]:
            continue
        table = read_table(path)  # a half-written file fails here
        assert len(table) == BIG_ROWS, f"{path} has {len(table)} rows, not {BIG_ROWS}"


@pytest.fixture
def generate(tmp_path) -> tuple[Generate, dict[Path, bytes]]:
    """A folder whose outputs hold a complete earlier run."""
    stage = Generate(tmp_path)
    first = stage.run(stage.small)
    assert first.returncode == 0, first.stderr
    return stage, {path: path.read_bytes() for path in stage.outputs()}


def test_sigkill_at_any_moment_leaves_previous_or_complete_outputs(generate):
    stage, previous = generate
    for delay in (0.3, 1.0, 2.0):
        process = stage.start()
        time.sleep(delay)
        process.kill()
        process.communicate()
        assert_previous_or_complete(stage.outputs(), previous)

    # Killed while the temporary file is half written: the destination must be untouched.
    caught = None
    for _attempt in range(3):
        # The timed kills above may have let a write finish: compare with what is there now.
        before_attempt = {path: path.read_bytes() for path in stage.outputs()}
        process = stage.start()
        caught = wait_until_writing(process, stage.out)
        process.kill()
        process.communicate()
        if caught is not None:
            break
    assert caught is not None, "the stage finished before its temporary file could be seen"
    assert caught.exists(), "SIGKILL cannot clean up, so the temporary file should still be there"
    assert_previous_or_complete(stage.outputs(), previous)
    target = next(path for path in stage.outputs() if caught.name.startswith(f".{path.name}."))
    assert target.read_bytes() == before_attempt[target], f"{target} changed while its temporary file was written"

    # The next run completes normally and removes what the killed runs left.
    rerun = stage.run(stage.big)
    assert rerun.returncode == 0, rerun.stderr
    assert [len(read_table(path)) for path in stage.outputs()] == [BIG_ROWS, BIG_ROWS]
    assert temp_files(stage.out) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", ["starting", "writing"])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_exit_130(generate, signum, moment):
    if moment == "starting" and not sys.platform.startswith("linux"):
        pytest.skip("needs /proc to see the stage loading its libraries")
    stage, previous = generate
    process = stage.start()
    reached = (wait_until_importing(process) if moment == "starting"
               else wait_until_writing(process, stage.out) is not None)
    assert reached, f"the stage ended before it was {moment}"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == [INTERRUPTED_MESSAGE]
    assert "Traceback" not in stdout + stderr
    assert_previous_or_complete(stage.outputs(), previous)
    # An interrupted write unwinds: its temporary file is removed at once.
    assert temp_files(stage.out) == []
