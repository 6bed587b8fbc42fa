"""Measuring a command: wall and CPU time, peak memory of its process tree, LightGBM's share; the machine.

`child_env(profile)` puts `profile_hook/` on PYTHONPATH, so every process of a
measured stage logs its LightGBM fits and oversampling to `profile`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

PROFILE_ENV = "PROPENSITY_PROFILE"  # read by profile_hook/sitecustomize.py
PROFILE_HOOK = Path(__file__).resolve().parent / "profile_hook"
MB = 1024 * 1024


class TreeMemorySampler(threading.Thread):
    """Samples the summed resident memory of a process and all its descendants.

    ru_maxrss is the peak of the single largest process; parallel workers add
    up, and their sum is what exhausts a machine's memory.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            total = 0
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_measured(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run one command; return its wall and CPU seconds, peak memory and exit code."""
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        # wait4 gives the child's own rusage, including the workers it waited for;
        # RUSAGE_CHILDREN of this process would mix all stages together.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
    largest_process_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        # Other work on the machine stretches wall time; the 1-minute load average says how much there was.
        "load_average": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(max(largest_process_mb, sampler.peak_bytes / MB), 1),
        "largest_process_rss_mb": round(largest_process_mb, 1),
        "exit_code": process.returncode,
    }


def profile_totals(path: Path) -> dict[str, Any]:
    """Sum the LightGBM-fit and oversampling durations a stage logged."""
    totals = {"lightgbm_fit_s": 0.0, "lightgbm_fits": 0, "oversample_s": 0.0}
    if not path.is_file():
        return totals
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "lightgbm_fit":
            totals["lightgbm_fit_s"] += record["seconds"]
            totals["lightgbm_fits"] += 1
        elif record["event"] == "oversample":
            totals["oversample_s"] += record["seconds"]
    totals["lightgbm_fit_s"] = round(totals["lightgbm_fit_s"], 3)
    totals["oversample_s"] = round(totals["oversample_s"], 3)
    return totals


def child_env(profile: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # `python` and `dvc` in stage commands must be this interpreter's environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop(PROFILE_ENV, None)
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
        # Every process of the stage, workers too, imports the timer (profile_hook/sitecustomize.py);
        # the working directory is the repository copy, so `stages` resolves there.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROFILE_HOOK), ".", env.get("PYTHONPATH")]))
    return env
