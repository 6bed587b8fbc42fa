"""The benchmarks' own machinery: the runner's configs and options, the one result format, the project copy
and its params, the profiling hook, the targets and the tables. No benchmark is run here (they are not tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from benchmarks import results
from benchmarks.markdown import markdown
from benchmarks.measure import child_env
from benchmarks.run import KINDS, configs, main, with_changes
from benchmarks.targets import check_targets
from benchmarks.workdir import project_copy, set_params

REPO_ROOT = results.ROOT


def test_every_config_names_a_kind_and_says_what_it_measures():
    for name, config in configs().items():
        assert config["kind"] in KINDS, name
        assert config["about"].strip(), name


def test_every_param_a_config_sets_is_in_the_committed_params():
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for name, config in configs().items():
        for dotted in (config.get("options") or {}).get("params") or {}:
            node = committed
            for key in dotted.split("."):
                assert isinstance(node, dict) and key in node, f"{name}: {dotted}"
                node = node[key]


def test_with_changes_sets_an_option_or_one_param_and_leaves_the_config_alone():
    options = {"rows": [10000], "params": {"tune.sample_rows": 200000}}
    changed = with_changes(options, ["rows=[3000, 4000]", "params.tune.n_iter=40", "flaml=null"])
    assert changed == {"rows": [3000, 4000], "params": {"tune.sample_rows": 200000, "tune.n_iter": 40},
                       "flaml": None}
    assert options == {"rows": [10000], "params": {"tune.sample_rows": 200000}}
    with pytest.raises(SystemExit, match="OPTION=VALUE"):
        with_changes(options, ["rows"])


def test_an_unknown_config_or_param_is_one_error_line_and_writes_nothing(capsys):
    before = sorted(results.RESULTS.rglob("*.json"))
    assert main(["no-such-config"]) == 2
    assert main(["sizes", "--with", "params.tune.no_such_key=1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "no-such-config" in lines[0] and "tune.no_such_key" in lines[1]
    assert sorted(results.RESULTS.rglob("*.json")) == before


def test_a_result_records_the_code_machine_and_load_and_is_stored_per_machine_and_commit(monkeypatch, tmp_path):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    result = results.new_result("sizes", "pipeline", {"rows": [10000]})
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert result["commit"] == head and isinstance(result["dirty"], bool)
    assert {"python", "lightgbm", "pandas", "scikit-learn", "dask"} <= set(result["versions"])
    assert {"cpu", "cores", "memory_gb", "os"} <= set(result["machine"])
    result["figures"]["runs"] = [{"label": "10,000"}]
    path = results.save(result)
    commit_folder = head[:12] + ("-dirty" if result["dirty"] else "")
    assert path == tmp_path / results.machine_name(result["machine"]) / commit_folder / "sizes.json"
    stored = json.loads(path.read_text())
    assert stored["complete"] is False and stored["figures"] == {"runs": [{"label": "10,000"}]}
    assert set(stored["load"]) == {"before", "after"}
    assert results.save(result, complete=True) == path and json.loads(path.read_text())["complete"] is True


def test_every_committed_result_is_filed_under_the_machine_and_commit_it_records():
    """So `compare A B` and the docs find a result by its commit: none without one (commit-unrecorded/)."""
    tracked = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked
    for name in tracked:
        stored = json.loads((REPO_ROOT / name).read_text())
        *_, machine, folder, _file = name.split("/")
        assert stored["commit"], f"{name} records no commit"
        assert folder == stored["commit"][:12] + ("-dirty" if stored["dirty"] else ""), name
        assert machine == results.machine_name(stored["machine"]), name


def test_a_machine_is_named_by_its_cpu_model_and_cores():
    assert results.machine_name({"cpu": "AMD EPYC", "cores": 2}) == "amd-epyc-2-cores"
    assert results.machine_name({"cpu": "Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz", "cores": 16}) == \
        "intel-xeon-platinum-8480c-16-cores"


@pytest.mark.subprocess
def test_the_project_copy_is_the_tracked_code_without_tests_benchmarks_or_results(tmp_path):
    copy = project_copy(tmp_path / "copy")
    assert (copy / "dvc.yaml").is_file() and (copy / "params.yaml").is_file() and (copy / "stages/lib").is_dir()
    for left_behind in ("tests", "benchmarks", "docs", "metrics", "dvc.lock"):
        assert not (copy / left_behind).exists(), left_behind
    status = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True, check=True)
    assert status.stdout == ""


def test_set_params_changes_only_the_named_keys_keeps_comments_and_refuses_unknown_ones(tmp_path):
    from ruamel.yaml import YAML

    read = YAML(typ="safe", pure=True).load  # YAML 1.2, as DVC and the params loader read it
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text())
    before = read(path.read_text())
    set_params(path, {"generate.rows": 1234, "tune.sample_rows": None,
                      "data": {"positive_label": "Yes", "id_columns": ["account_ref"], "categorical_columns": []}})
    after = read(path.read_text())
    assert after["generate"]["rows"] == 1234 and after["tune"]["sample_rows"] is None
    assert after["data"]["id_columns"] == ["account_ref"] and after["data"]["positive_label"] == "Yes"
    assert after["data"]["categorical_columns"] == []
    for section in set(before) - {"generate", "tune", "data"}:
        assert after[section] == before[section], section
    assert "#" in path.read_text()
    with pytest.raises(KeyError, match="generate.no_such_key"):
        set_params(path, {"generate.no_such_key": 1})
    # From another file: that one is left as it was.
    edited = tmp_path / "edited.yaml"
    set_params(edited, {"generate.rows": 99}, source=path)
    assert read(edited.read_text())["generate"]["rows"] == 99 and read(path.read_text())["generate"]["rows"] == 1234


PROFILED_FIT = """
import numpy as np
from lightgbm import LGBMClassifier
from stages.lib.modeling import resampling
X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
print(hasattr(LGBMClassifier.fit, "__wrapped__"), hasattr(resampling.oversample, "__wrapped__"))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("profiled", [True, False])
def test_profile_hook_times_every_lightgbm_fit_and_costs_nothing_when_unset(tmp_path, profiled):
    log = tmp_path / "profile.jsonl"
    out = subprocess.run([sys.executable, "-c", PROFILED_FIT], cwd=REPO_ROOT, env=child_env(log if profiled else None),
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{profiled} {profiled}"
    if profiled:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["event"] for r in records] == ["lightgbm_fit"] and records[0]["seconds"] > 0
    else:
        assert not log.exists()


def test_the_pipeline_code_knows_nothing_of_profiling():
    for path in (REPO_ROOT / "stages").rglob("*.py"):
        assert "PROPENSITY_PROFILE" not in path.read_text(), path


WORKER_FIT = """
import numpy as np
from lightgbm import LGBMClassifier
X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
"""


@pytest.mark.subprocess
def test_benchmark_times_fits_in_processes_that_never_import_stages(tmp_path):
    # A cross-validation worker with resample.method none unpickles only LightGBM and
    # imbalanced-learn; the benchmark's environment must still time its fits.
    log = tmp_path / "profile.jsonl"
    subprocess.run([sys.executable, "-c", WORKER_FIT], cwd=REPO_ROOT, env=child_env(log), check=True)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["lightgbm_fit"]


def _result(figures: dict) -> dict:
    return {"config": "sizes", "commit": "0" * 40, "dirty": False, "load": {"before": 1.0, "after": 1.5},
            "machine": {"cpu": "x", "cores": 2, "memory_gb": 1, "os": "y"},
            "versions": {"python": "3", "lightgbm": "4"}, "figures": figures}


def _run(label, rows, total, peak, train_wall=None, fit=None):
    stages = [{"stage": "train", "wall_s": train_wall or 10.0, "cpu_s": 1.0, "peak_rss_mb": peak,
               "exit_code": 0, "lightgbm_fit_s": fit}]
    return {"label": label, "rows": rows, "completed": True, "stages": stages, "total_wall_s": total,
            "peak_rss_mb": peak, "dvc_commit_s": 1.0, "noop_repro_s": 1.0}


def test_targets_say_by_how_much_a_run_missed():
    runs = [_run("1,000,000", 1_000_000, 1000.0, 7000.0, train_wall=100.0, fit=70.0)]
    targets = {t["target"]: t for t in check_targets(runs)}
    assert targets["1,000,000 rows end to end"]["met"] is False
    assert targets["1,000,000 rows end to end"]["margin"] == "missed by 100.0 s (11%)"
    assert targets["1,000,000 rows peak memory"]["met"] is False
    assert targets["1,000,000 rows: train stage time outside LightGBM's fit"]["measured"] == "30.0%"
    assert targets["10,000,000 rows completes"]["met"] is None
    results = _result({"runs": runs, "targets": check_targets(runs)})
    assert "| 1,000,000 rows end to end | < 900 s | 1000 s | **no** | missed by 100.0 s (11%) |" in markdown(results)


def test_time_per_row_growth_compares_ten_million_with_one_million():
    runs = [_run("1,000,000", 1_000_000, 600.0, 1000.0), _run("10,000,000", 10_000_000, 6600.0, 9000.0)]
    targets = {t["target"]: t for t in check_targets(runs)}
    assert targets["time per row, 10M vs 1M"]["measured"] == "1.10x"
    assert targets["time per row, 10M vs 1M"]["met"] is True
    assert targets["10,000,000 rows peak memory"]["met"] is True


def _quality_run(label, rows, pipeline, lr=None, lgbm=None, flaml=None):
    run = _run(label, rows, 10.0, 100.0)
    flaml_entry = {"status": "run", "average_precision": flaml, "configs_tried": 9, "wall_s": 61.0, "cpu_s": 70.0,
                   "n_jobs": 2, "load_average": 2.0} if flaml is not None else {"status": "not run", "reason": "x"}
    baselines = {"flaml": flaml_entry}
    if lr is not None:
        baselines["logistic_regression"] = {"average_precision": lr, "average_precision_difference_se": 0.02}
    if lgbm is not None:
        baselines["default_lightgbm"] = {"average_precision": lgbm}
    run["quality"] = {"test_rows": 600, "test_buyers": 30, "average_precision": pipeline, "roc_auc": 0.8,
                      "ideal_average_precision": None, "average_precision_ratio": None, "baselines": baselines,
                      "family": "logistic_regression"}
    return run


def _quality(runs, label):
    return next(t for t in check_targets(runs) if t["target"].startswith(label) and "baseline" in t["target"])


def test_quality_target_fails_when_any_baseline_ranks_better_and_says_which_and_by_how_much():
    runs = [_quality_run("own table", 3000, 0.40, lr=0.45, lgbm=0.30, flaml=0.42)]
    target = _quality(runs, "own table (3,000 rows):")
    assert target["met"] is False
    assert target["measured"] == "0.4000 vs logistic regression 0.4500"
    assert target["margin"] == "missed by 0.0500 AP (-11.1%), logistic regression ranks better"
    results = _result({"runs": runs, "targets": check_targets(runs)})
    table = markdown(results)
    assert "| own table | 3,000 | 600 (30) | logistic regression | **0.4000** |  |  | 0.8000 | 0.4500 (0.0200) | " \
           "0.3000 | 0.4200 | " \
           "logistic regression | 9 configs in a 60 s budget, 61 s wall, 70 s CPU, n_jobs 2, load 2.0 |" in table


def test_quality_target_is_met_only_when_the_pipeline_ties_or_beats_every_baseline():
    met = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.38, lgbm=0.40, flaml=0.39)], "10,000 rows:")
    assert met["met"] is True and met["margin"] == "0.0000 AP to spare (+0.0%)"
    assert met["measured"] == "0.4000 vs default LightGBM 0.4000"
    # FLAML not run: beating the other two is not enough to call the target met.
    partial = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.38, lgbm=0.39)], "10,000 rows:")
    assert partial["met"] is None and "FLAML 60 s not run" in partial["measured"]
    # ... but losing to one that did run is a miss.
    missed = _quality([_quality_run("10,000", 10_000, 0.40, lr=0.41, lgbm=0.39)], "10,000 rows:")
    assert missed["met"] is False
    # A run measured before quality was recorded has the target, not run.
    old = _quality([_run("1,000,000", 1_000_000, 100.0, 100.0)], "1,000,000 rows:")
    assert old["met"] is None and old["measured"] == "not run"


def test_compare_shows_two_commits_results_side_by_side_with_ratios(capsys):
    from benchmarks.compare import compare, numbers

    first = {"config": "c", "commit": "a" * 40, "dirty": False, "machine": {"cpu": "X", "cores": 2, "memory_gb": 1},
             "versions": {"python": "3.11.7", "lightgbm": "4.7.0"}, "load": {"before": 1.0, "after": 1.0},
             "figures": {"runs": [{"label": "default", "stages": [{"stage": "tune", "wall_s": 10.0}]}],
                         "only_here": 3, "flag": True}}
    second = json.loads(json.dumps(first))
    second["figures"]["runs"][0]["stages"][0]["wall_s"] = 5.0
    del second["figures"]["only_here"]
    assert numbers(first["figures"]) == {"runs.default.stages.tune.wall_s": 10.0, "only_here": 3.0}
    text = compare(first, second)
    assert "| runs.default.stages.tune.wall_s | 10 | 5 | 0.500 |" in text
    assert "only_here" not in text and "flag" not in text
    # The runner's subcommand, on two stored results of this repository.
    assert main(["compare", "fe27181", "5e55704", "--machine", "amd-epyc-2-cores", "--config", "scoring-1m"]) == 0
    out = capsys.readouterr().out
    assert "### `scoring-1m`" in out and "| variants.no flags.0.wall_s |" in out
    with pytest.raises(SystemExit, match="neither a commit nor a folder"):
        main(["compare", "no-such-commit", "ffd33c9", "--machine", "amd-epyc-2-cores"])
