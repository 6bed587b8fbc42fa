"""Every stage's `params:` in dvc.yaml is exactly what the stage reads.

DVC reruns a stage when a param it lists changes, and only then: a key a stage
reads but does not list leaves its results stale without a word when the key
changes; a listed key it never reads reruns it for nothing. Each stage runs here
in this process, on a small table, as dvc.yaml's command line says, while every
read of a params section's field is recorded (after params.yaml is loaded and
checked, which reads them all). A key the command line interpolates (`${data.path}`)
counts as read. The stages run under several params, so a key read on one branch
only (a threshold objective's own settings, SMOTE's neighbours, a repeated ID)
is read in some run; the union must equal what dvc.yaml lists.
"""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
import yaml

from stages.lib.core.params import Params
from stages.lib.core.params_types import Section
from tests.helpers import DATED, REPO_ROOT, edited_params, write_params

SPEC = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
PATHS = SPEC["vars"][0]["paths"]
DAG = ["generate", "preprocess", "resample", "tune", "calibrate", "train", "evaluate"]
SECTION_OF = {field.annotation: name for name, field in Params.model_fields.items()}
SMALL = {"generate.rows": 2000, "generate.purchase_rate": 0.08, "model.n_estimators": 20,
         "tune.early_stopping_rounds": None}

# Runs beyond the default one: (what differs, the params edits, the stages to run again, a change to the table).
VARIANTS: list[tuple[str, dict, list[str], Callable[[pd.DataFrame], pd.DataFrame] | None]] = [
    ("threshold by precision", {"threshold.objective": "min_precision", "threshold.min_precision": 0.05},
     ["calibrate"], None),
    ("threshold by budget", {"threshold.objective": "top_fraction"}, ["calibrate"], None),
    ("threshold by profit", {"threshold.objective": "profit"}, ["calibrate", "evaluate"], None),
    # The small table ships a logistic regression; LightGBM's own params are read where LightGBM ships.
    ("LightGBM, stopped early", {"tune.early_stopping_rounds": 5, "model.family": "lightgbm"},
     ["tune", "calibrate", "train"], None),
    ("repeated IDs", {}, ["preprocess"], lambda table: pd.concat([table, table.head(5)], ignore_index=True)),
    # Last: it leaves dated splits behind, which make the later stages fold in time order.
    ("dated, out of time", DATED, ["generate", "preprocess", "tune", "calibrate", "evaluate"], None),
]


def listed_keys(stage: str) -> set[str]:
    """dvc.yaml's params of a stage as section.key names (a whole section: every key of it)."""
    keys = set()
    for entry in SPEC["stages"][stage].get("params", []):
        section, _, key = entry.partition(".")
        keys |= {f"{section}.{key}"} if key else {f"{section}.{k}" for k in Params.model_fields[section].annotation
                                                   .model_fields}
    return keys


def interpolated_keys(stage: str) -> set[str]:
    """The params keys a stage's command line and deps take their values from (`${data.path}`)."""
    text = SPEC["stages"][stage]["cmd"] + " " + " ".join(map(str, SPEC["stages"][stage].get("deps", [])))
    return {f"{section}.{key}" for section, key in re.findall(r"\$\{(\w+)\.(\w+)\}", text) if section != "paths"}


def command(stage: str, raw: dict) -> list[str]:
    """The stage's arguments as dvc.yaml's command line gives them."""
    cmd = re.sub(r"\$\{paths\.(\w+)\}", lambda m: PATHS[m.group(1)], SPEC["stages"][stage]["cmd"])
    cmd = re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(raw[m.group(1)][m.group(2)]), cmd)
    words = shlex.split(cmd)
    assert words[:3] == ["python", "-m", f"stages.{stage}"], cmd
    return words[3:]


class Reads:
    """The section.key names of every params field read while `recording`."""

    def __init__(self):
        self.keys: set[str] = set()
        self.recording = False

    def spy(self, original) -> Callable:
        reads = self

        def getattribute(section, name):
            if reads.recording and name in type(section).model_fields and type(section) in SECTION_OF:
                reads.keys.add(f"{SECTION_OF[type(section)]}.{name}")
            return original(section, name)
        return getattribute


@pytest.fixture
def run_stage(monkeypatch, tmp_path) -> Iterator[Callable[[str, dict], set[str]]]:
    """run_stage(stage, raw params) -> the keys the stage read, run in tmp_path as dvc.yaml says."""
    reads = Reads()
    monkeypatch.setattr(Section, "__getattribute__", reads.spy(Section.__getattribute__))
    monkeypatch.chdir(tmp_path)

    def run(stage: str, raw: dict) -> set[str]:
        write_params(raw, tmp_path / "params.yaml")
        module = importlib.import_module(f"stages.{stage}")
        loader = module.load_params

        def load_and_record(path):
            params = loader(path)
            reads.recording = True
            return params

        monkeypatch.setattr(module, "load_params", load_and_record)
        reads.keys, reads.recording = set(), False
        try:
            module.main(command(stage, raw))
        finally:
            reads.recording = False
            monkeypatch.setattr(module, "load_params", loader)
        return reads.keys | interpolated_keys(stage)
    yield run


def test_every_stage_lists_exactly_the_params_it_reads(run_stage, tmp_path):
    raw = edited_params(SMALL)
    read = {stage: run_stage(stage, raw) for stage in DAG}
    table = tmp_path / PATHS["raw_customers"]
    generated = pd.read_csv(table)
    for _, edits, stages, change in VARIANTS:
        if change is not None:
            change(generated).to_csv(table, index=False)
        for stage in stages:
            read[stage] |= run_stage(stage, edited_params({**SMALL, **edits}))
        generated.to_csv(table, index=False)
    problems = []
    for stage in DAG:
        listed = listed_keys(stage)
        if read[stage] - listed:
            problems.append(f"{stage} reads {sorted(read[stage] - listed)}, which dvc.yaml does not list")
        if listed - read[stage]:
            problems.append(f"dvc.yaml lists {sorted(listed - read[stage])} for {stage}, which it never reads")
    assert not problems, "\n".join(problems)


def test_the_recorder_sees_a_read_made_deep_in_the_library(monkeypatch):
    """The check can fail: a section handed down and read inside a method is recorded as that key, and the
    section itself (a field of Params) is not a key."""
    from stages.lib.core.params import parse_params
    from stages.lib.modeling.estimators import Recipe

    params = parse_params(edited_params(SMALL))
    reads = Reads()
    monkeypatch.setattr(Section, "__getattribute__", reads.spy(Section.__getattribute__))
    reads.recording = True
    assert params.tune.sample_size == 200_000  # a property reading tune.sample_rows
    Recipe(params.model, params.resample, params.base.seed).classifier(1)
    assert reads.keys == {"tune.sample_rows", "base.seed", "model.n_estimators", "resample.method"}
