"""A stage loads only the heavy libraries its work uses, and none of them for `--help`.

Each is proven in a child process, from `python -X importtime` (every module the
run imported, as the interpreter reports it) or from `sys.modules`:

- `python -m stages.<name> --help` loads none of scikit-learn, LightGBM, matplotlib,
  scikit-optimize, imbalanced-learn, SciPy, Dask: a stage imports its work's modules
  in `main`, after the arguments parse (docs/performance.md, "Stage start-up");
- a report run draws with matplotlib and loads neither scikit-learn nor LightGBM;
- `resample.method: none` copies the split without imbalanced-learn or scikit-learn;
- importing stages.predict maps no OpenMP runtime, so the OMP_WAIT_POLICY its main
  sets is read when LightGBM loads with the model;
- nothing outside stages/lib/engines/dask/, imported with every library it imports
  anywhere (in functions too), loads Dask with the local engine open.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.lib.core.tables import write_table
from tests.helpers import PYTHON, REPO_ROOT, child_env, edited_params, write_params

STAGES = ["generate", "generate_events", "features", "preprocess", "resample", "tune", "calibrate", "train", "evaluate",
          "predict", "report"]
# What only a stage's work needs, never its start-up.
WORK_LIBRARIES = {"sklearn", "lightgbm", "matplotlib", "skopt", "imblearn", "scipy", "dask", "distributed"}


def imported_by(*args: str | Path, cwd: Path = REPO_ROOT) -> set[str]:
    """The top-level packages a `python -X importtime ARGS` run imported (it must exit 0)."""
    result = subprocess.run([PYTHON, "-X", "importtime", *map(str, args)], cwd=cwd,
                            env=child_env(PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    names = [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
             if line.startswith("import time:") and "[us]" not in line]  # not the header
    assert names, "no -X importtime lines: the check could not see the imports"
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("stage", STAGES)
def test_help_loads_none_of_the_work_libraries(stage):
    assert not imported_by("-m", f"stages.{stage}", "--help") & WORK_LIBRARIES


def test_the_check_sees_a_library_loaded_deep_in_the_library():
    # The check can fail: importing a module that needs scikit-learn inside the library shows it.
    assert "sklearn" in imported_by("-c", "import stages.lib.data.preprocessor")


def test_a_report_run_draws_with_matplotlib_without_scikit_learn_or_lightgbm(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=child_env())
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "empty"], cwd=tmp_path, check=True, env=child_env())
    loaded = imported_by("-m", "stages.report", "--base", "HEAD", "--output", tmp_path / "report.md",
                         "--plots-dir", tmp_path / "plots", cwd=tmp_path)
    assert (tmp_path / "report.md").is_file()
    assert "matplotlib" in loaded
    assert not loaded & (WORK_LIBRARIES - {"matplotlib"})


def test_resample_none_copies_the_split_without_imbalanced_learn(tmp_path, train_table):
    write_table(train_table, tmp_path / "train.parquet")
    params = write_params(edited_params({"resample.method": "none"}), tmp_path / "params.yaml")
    loaded = imported_by("-m", "stages.resample", "--params", params, "--train", tmp_path / "train.parquet",
                         "--output", tmp_path / "out.parquet", "--metrics", tmp_path / "resample.json")
    assert json.loads((tmp_path / "resample.json").read_text())["synthetic_rows"] == 0
    assert not loaded & WORK_LIBRARIES


def test_importing_predict_loads_no_openmp_before_main_sets_its_wait_policy():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    code = ("import sys, stages.predict\n"
            "maps = open('/proc/self/maps').read()\n"
            "print(sorted({'lightgbm', 'sklearn'} & set(sys.modules)), 'gomp' in maps)")
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True,
                            timeout=300, check=True)
    assert result.stdout.split() == ["[]", "False"]


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found - {"stages", "__future__"}


def test_the_local_engine_and_all_the_code_it_runs_never_load_dask():
    library = sorted(p for p in (REPO_ROOT / "stages").rglob("*.py")
                     if "dask" not in p.relative_to(REPO_ROOT / "stages").parts)
    modules = [".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__") for p in library]
    libraries = sorted(set().union(*map(third_party_imports, library)))
    assert {"lightgbm", "sklearn", "skopt", "imblearn", "matplotlib"} <= set(libraries)
    code = (f"import importlib, sys\nfor name in {modules + libraries!r}:\n    importlib.import_module(name)\n"
            "from stages.lib.engines.base import open_engine\n"
            "with open_engine('local') as engine:\n    pass\n"
            "print(sorted({'dask', 'distributed'} & {name.split('.')[0] for name in sys.modules}))")
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True,
                            timeout=300, check=True)
    assert result.stdout.split() == ["[]"]
