"""The layout holds: no stage imports another, and dvc.yaml's code deps are exactly what each stage imports.

Imports are read from the source (every `import` and `from ... import`, inside
functions too) and followed through the library, so a change to any module a
stage runs re-runs that stage, and an edit elsewhere does not. A stage opens its
engine by name (stages.lib.engines.base.open_engine), so dvc.yaml lists the
folder `stages/lib/engines/${compute.engine}`: with each engine, the deps are what
the stage and that engine import, and a local pipeline never depends on the Dask
engine's code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stages.lib.core.params_types import ENGINES
from stages.lib.evaluation import plot_data
from tests.helpers import REPO_ROOT

PACKAGE = "stages"
LIBRARY = "stages.lib"
SPEC = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
DAG_STEPS = sorted(SPEC["stages"])
COMMANDS = ["predict", "report"]


def module_file(module: str) -> Path:
    return REPO_ROOT / (module.replace(".", "/") + ".py")


def package_file(package: str) -> Path:
    return REPO_ROOT / package.replace(".", "/") / "__init__.py"


def source_file(name: str) -> Path:
    """The file Python runs for a module or a package."""
    return module_file(name) if module_file(name).is_file() else package_file(name)


def direct_imports(module: str) -> set[str]:
    """The project modules `module` imports anywhere in its source (modules, not packages)."""
    found = set()
    for node in ast.walk(ast.parse(source_file(module).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == PACKAGE and module_file(name).is_file()}
    return found


def imported_modules(module: str) -> set[str]:
    """`module` and every project module it imports, transitively, with the packages that hold them (Python
    runs a package's __init__.py before any module of it)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(direct_imports(current))
            parts = current.split(".")
            todo.extend(package for package in (".".join(parts[:end]) for end in range(1, len(parts)))
                        if package_file(package).is_file())
    return seen


ENGINE_DEP = "stages/lib/engines/${compute.engine}"


def code_deps(stage: str, engine: str) -> set[str]:
    """The code files dvc.yaml lists for a stage when compute.engine is `engine` (a listed folder: its modules)."""
    listed = set()
    for dep in SPEC["stages"][stage]["deps"]:
        dep = dep.replace("${compute.engine}", engine)
        if dep.endswith(".py"):
            listed.add(dep)
        elif dep.startswith(f"{PACKAGE}/") and (REPO_ROOT / dep).is_dir():
            listed |= {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / dep).rglob("*.py")}
    return listed


def imported_files(module: str) -> set[str]:
    return {str(source_file(m).relative_to(REPO_ROOT)) for m in imported_modules(module)}


def engine_imports(stage: str, engine: str) -> set[str]:
    """What a stage runs with an engine: its own imports and, when it opens an engine, the engine's."""
    imported = imported_files(f"{PACKAGE}.{stage}")
    if "stages/lib/engines/base.py" in imported:
        imported |= imported_files(f"{LIBRARY}.engines.{engine}.engine")
    return imported


def test_every_dag_step_and_command_is_a_module_of_its_own():
    assert DAG_STEPS == sorted(["generate", "generate_events", "features", "preprocess", "resample", "tune",
                                "calibrate", "train", "evaluate"])
    for name in DAG_STEPS + COMMANDS:
        assert module_file(f"{PACKAGE}.{name}").is_file(), name
        assert f"python -m stages.{name} " in SPEC["stages"].get(name, {"cmd": f"python -m stages.{name} "})["cmd"]
    modules = {p.stem for p in (REPO_ROOT / PACKAGE).glob("*.py")} - {"__init__"}
    assert modules == set(DAG_STEPS + COMMANDS), "stages/ holds the DAG steps and commands only; the rest is lib/"


@pytest.mark.parametrize("name", DAG_STEPS + COMMANDS)
def test_no_stage_imports_another_stage(name):
    others = {f"{PACKAGE}.{other}" for other in DAG_STEPS + COMMANDS if other != name}
    assert not imported_modules(f"{PACKAGE}.{name}") & others


def library_modules() -> list[str]:
    return [".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            for path in sorted((REPO_ROOT / PACKAGE / "lib").rglob("*.py")) if path.stem != "__init__"]


def test_the_library_never_imports_a_stage():
    for module in library_modules():
        assert all(m.startswith(LIBRARY + ".") for m in direct_imports(module)), module


def test_all_dask_code_is_in_the_dask_engine():
    """Only the Dask engine's folder, stages/lib/engines/dask/, imports dask or distributed (lightgbm.dask included)."""
    def dask_imports(path: Path) -> list[str]:
        found = []
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            found += [n for n in names if n.split(".")[0] in ("dask", "distributed") or n == "lightgbm.dask"]
        return found
    users = {str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / PACKAGE).rglob("*.py") if dask_imports(path)}
    assert users and all(user.startswith("stages/lib/engines/dask/") for user in users), users


@pytest.mark.parametrize("folder, other", [("tests", "benchmarks"), ("benchmarks", "tests")])
def test_the_tests_and_the_benchmarks_never_import_each_other(folder, other):
    """What both need (example tables, the project's code) is in the library; an import in a string
    (`python -c "..."`) counts too."""
    importing = re.compile(rf"\b(?:from|import)\s+{other}(?:\.|\s|$)", re.MULTILINE)
    offenders = [str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / folder).rglob("*.py"))
                 if importing.search(path.read_text())]
    assert offenders == []


def test_package_inits_run_no_library_code_a_stage_would_miss():
    # Package __init__ files are deps like any module, but they hold their map only, so importing one
    # module of a subpackage loads no other; stages/__init__.py only installs the quiet Ctrl-C handler.
    for init in (REPO_ROOT / PACKAGE / "lib").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0].value, ast.Constant), init
    assert direct_imports("stages.__init__") <= {"stages.lib.core.cli"}


@pytest.mark.parametrize("stage", DAG_STEPS)
def test_dvc_yaml_lists_exactly_the_code_each_stage_imports(stage):
    run_by_some_engine = set()
    for engine in ENGINES:
        imported, listed = engine_imports(stage, engine), code_deps(stage, engine)
        assert not imported - listed, \
            f"{stage} on {engine} imports these but dvc.yaml does not list them: {sorted(imported - listed)}"
        run_by_some_engine |= imported
        if engine == "local":
            assert not [f for f in listed if f.startswith("stages/lib/engines/dask/")], \
                f"{stage}: a local pipeline depends on Dask code"
    listed = set.union(*(code_deps(stage, engine) for engine in ENGINES))
    assert not listed - run_by_some_engine, \
        f"dvc.yaml lists these for {stage} but no engine's run imports them: {sorted(listed - run_by_some_engine)}"


@pytest.mark.parametrize("stage", [s for s in DAG_STEPS if ENGINE_DEP in SPEC["stages"][s]["deps"]])
def test_a_stage_that_opens_an_engine_lists_it_and_reads_compute(stage):
    assert "stages/lib/engines/base.py" in engine_imports(stage, "local")
    assert "compute" in SPEC["stages"][stage]["params"]


def test_the_check_sees_imports_inside_functions(monkeypatch):
    # A lazy import counts: the walk reads every node of the source, not only the top level.
    source = "def later():\n    from stages.lib.evaluation import metrics\n    import stages.lib.evaluation.plot_data\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert direct_imports("stages.generate") == {"stages.lib.evaluation.metrics", "stages.lib.evaluation.plot_data"}


def test_evaluate_plot_files_are_the_ones_dvc_yaml_draws():
    test_plots = SPEC["vars"][0]["paths"]["test_plots"]
    drawn = set()
    for entry in SPEC["plots"]:
        if isinstance(entry, str):
            drawn.add(entry)
            continue
        (_, spec), = entry.items()
        drawn |= set(spec["y"]) if isinstance(spec.get("y"), dict) else set()
    in_folder = {Path(p).name for p in drawn if p.startswith(test_plots + "/")}
    assert in_folder and in_folder <= set(plot_data.TEST_PLOT_FILES)


LIBRARY_DIR = REPO_ROOT / PACKAGE / "lib"
MODULE_MAX_LINES = 250


def test_no_library_module_does_several_jobs_in_more_than_250_lines():
    long = {str(p.relative_to(REPO_ROOT)): n for p in LIBRARY_DIR.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MODULE_MAX_LINES}
    assert long == {}, f"split these along their seams: {long}"


def test_the_library_lives_in_subpackages_by_concern():
    loose = sorted(p.name for p in LIBRARY_DIR.glob("*.py") if p.stem != "__init__")
    assert len(loose) <= 3, loose
    for folder in sorted(p for p in LIBRARY_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (folder / "__init__.py").is_file(), folder
        assert ast.get_docstring(ast.parse((folder / "__init__.py").read_text())), f"{folder}: say what it holds"


def test_only_the_params_module_and_the_stages_take_a_whole_params():
    """Library functions take the sections or values they read (tests/test_params_reads.py checks dvc.yaml)."""
    takers = []
    for path in LIBRARY_DIR.rglob("*.py"):
        if path.relative_to(LIBRARY_DIR).as_posix() == "core/params.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if any(a.annotation is not None and re.search(r"\bParams\b", ast.unparse(a.annotation))
                       for a in arguments):
                    takers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}")
    assert takers == []
