"""The model stages give the same bytes whichever CPU kernels numpy, scipy and OpenBLAS pick.

OpenBLAS (inside numpy's and scipy's wheels) chooses a kernel for the CPU it
runs on, and OPENBLAS_CORETYPE overrides the choice; numpy chooses SIMD code
(SVML on AVX-512) and NPY_DISABLE_CPU_FEATURES narrows it. Between kernels,
results move in the last bit, and the committed dvc.lock and metrics/ must not.

The stages run as subprocesses on a small table (4,000 customers, 12 search
iterations: 10 random points and 2 from the Gaussian process), with SMOTE and
sigmoid calibration so the nearest neighbours and the logistic regression are
exercised too. generate and preprocess run once; resample, tune, calibrate,
train and evaluate run under each environment:

- OPENBLAS_CORETYPE=Prescott (SSE3, the oldest kernel), Haswell (AVX2) and the
  machine's own choice (unset);
- on an AVX-512 machine also numpy limited to AVX2 (NPY_DISABLE_CPU_FEATURES),
  as on a CPU without AVX-512.

A kernel the CPU cannot run is left out: OpenBLAS then falls back silently to
another one, so each environment's architecture is read from
threadpoolctl.threadpool_info() in a child process, and environments that end
up with the same kernels as an earlier one are dropped. Fewer than two distinct
kernels fails the test rather than skipping it (every x86-64 CPU runs Prescott,
and picks another natively), so the file's only test never goes unrun unseen.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PYTHON, child_env, edited_params, python_module, write_params

pytestmark = pytest.mark.e2e

KERNEL_PARAMS = {
    "generate.rows": 4000,
    "tune.n_iter": 12,
    "tune.cv_folds": 2,
    "model.n_estimators": 30,
    "calibration.cv_folds": 2,
    "calibration.method": "sigmoid",
    "resample.method": "smote",
}

# OpenBLAS's name for the kernel OPENBLAS_CORETYPE asks for, as threadpoolctl reports it.
# Its DYNAMIC_ARCH builds report the SSE3 Prescott kernel as "Katmai" (the same code).
REPORTED_AS = {"Prescott": {"Prescott", "Katmai"}, "Haswell": {"Haswell"}}

# Everything above numpy's X86_V3 (AVX2, FMA3) level: numpy then runs as on an AVX2-only CPU.
NUMPY_AVX2_ONLY = "X86_V4 AVX512_ICL AVX512_SPR"

PROBE = """
import json, numpy, scipy.linalg, threadpoolctl
from numpy._core._multiarray_umath import __cpu_features__
blas = sorted({(i.get("internal_api"), i.get("architecture")) for i in threadpoolctl.threadpool_info()
               if i["user_api"] == "blas"})
print(json.dumps({"blas": blas, "x86_v4": bool(__cpu_features__.get("X86_V4"))}))
"""

KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_VERBOSE")


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in child_env(PYTHONUNBUFFERED="1").items() if k not in KERNEL_VARIABLES}
    env.update(extra)
    return env


def probe(extra: dict[str, str]) -> dict:
    result = subprocess.run([PYTHON, "-c", PROBE], env=environment(**extra), capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout)


def environments() -> dict[str, dict[str, str]]:
    """Name -> extra environment, for every distinct kernel choice this CPU can run."""
    native = probe({})
    if not native["blas"] or any(api != "openblas" for api, _ in native["blas"]):
        # The pinned numpy and scipy wheels bundle OpenBLAS: another BLAS means another install.
        pytest.fail(f"numpy/scipy do not use OpenBLAS here ({native['blas']}); install requirements.txt's wheels")
    chosen: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    candidates = [(f"OPENBLAS_CORETYPE={core}", {"OPENBLAS_CORETYPE": core}) for core in REPORTED_AS]
    candidates.append((f"native ({native['blas'][0][1]})", {}))
    if native["x86_v4"]:
        candidates.append(("native, numpy without AVX-512", {"NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2_ONLY}))
    for name, extra in candidates:
        info = native if not extra else probe(extra)
        core = extra.get("OPENBLAS_CORETYPE")
        if core and not {arch for _, arch in info["blas"]} <= REPORTED_AS[core]:
            continue  # the CPU cannot run it: OpenBLAS fell back to another kernel
        key = json.dumps([info["blas"], info["x86_v4"]])
        if key not in seen:
            seen.add(key)
            chosen[name] = extra
    # Every x86-64 CPU runs Prescott (SSE3), and every one made since 2008 picks another kernel natively,
    # so on x86-64 this never leaves the file's only test unrun; it fails instead of skipping quietly.
    assert len(chosen) >= 2, f"only one kernel choice runs on this CPU: {chosen}"
    return chosen


def stage(name: str, extra: dict[str, str], params: Path, *args: str | Path) -> None:
    python_module(f"stages.{name}", "--params", params, *args, env=environment(**extra))


def model_stages(shared: Path, out: Path, extra: dict[str, str], params: Path) -> None:
    """resample, tune, calibrate, train and evaluate on the shared splits; their outputs go to `out`."""
    train, test, m = shared / "train.parquet", shared / "test.parquet", out / "metrics"
    stage("resample", extra, params, "--train", train, "--output", out / "resampled.parquet",
          "--metrics", m / "resample.json")
    stage("tune", extra, params, "--train", train, "--best-params", out / "best_params.json",
          "--metrics", m / "tune.json", "--trace", m / "tune_trace.json")
    stage("calibrate", extra, params, "--train", train, "--best-params", out / "best_params.json",
          "--calibrator", out / "calibrator.joblib", "--threshold", out / "threshold.json",
          "--metrics", m / "calibrate.json", "--threshold-curve", m / "threshold.json",
          "--threshold-image", m / "threshold.png")
    stage("train", extra, params, "--train", out / "resampled.parquet", "--best-params", out / "best_params.json",
          "--model", out / "model.joblib", "--model-text", out / "model.txt")
    stage("evaluate", extra, params, "--test", test, "--train", train, "--model", out / "model.joblib",
          "--preprocessor", shared / "preprocessor.joblib", "--calibrator", out / "calibrator.joblib",
          "--threshold", out / "threshold.json",
          "--true-probabilities", shared / "true_probability.parquet", "--generated-path", shared / "customers.csv",
          "--metrics", m / "metrics.json", "--plots-dir", m / "plots")


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def first_differences(a: Path, b: Path, limit: int = 6) -> list[str]:
    """The first differing values of two JSON files, for the failure message."""
    def flat(x, path=""):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from flat(v, f"{path}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                yield from flat(v, f"{path}[{i}]")
        else:
            yield path, x
    left, right = dict(flat(json.loads(a.read_text()))), dict(flat(json.loads(b.read_text())))
    return [f"{k}: {left[k]!r} != {right.get(k)!r}" for k in left if left[k] != right.get(k)][:limit]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="the guarantee is for x86-64 CPUs, whose OpenBLAS kernels this switches")
def test_model_stages_give_the_same_bytes_under_every_cpu_kernel(tmp_path):
    envs = environments()
    params = write_params(edited_params(KERNEL_PARAMS), tmp_path / "params.yaml")
    shared = tmp_path / "shared"
    stage("generate", {}, params, "--output", shared / "customers.csv",
          "--probabilities", shared / "true_probability.parquet")
    stage("preprocess", {}, params, "--input", shared / "customers.csv", "--train", shared / "train.parquet",
          "--test", shared / "test.parquet", "--preprocessor", shared / "preprocessor.joblib")
    outputs = {}
    for name, extra in envs.items():
        outputs[name] = tmp_path / f"env{len(outputs)}"
        model_stages(shared, outputs[name], extra, params)
    reference_name, reference = next(iter(outputs.items()))
    expected = digests(reference)
    report = []
    for name, out in outputs.items():
        got = digests(out)
        differing = sorted(path for path in expected if got.get(path) != expected[path])
        if differing:
            report.append(f"{name} vs {reference_name}: {differing}")
            report += [f"    {path} {line}" for path in differing if path.endswith(".json")
                       for line in first_differences(reference / path, out / path)]
    assert not report, "outputs differ between CPU kernels:\n" + "\n".join(report)
