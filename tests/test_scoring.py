"""Scoring's pure parts: which files it loads, ranks and deciles (the command is tested in test_predict.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.lib.core.errors import ArtifactError
from stages.lib.core.files import load_object
from stages.lib.scoring import batches, scorer


def test_model_files_are_the_paths_dvc_yaml_declares():
    declared = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["vars"][0]["paths"]
    assert scorer.PREPROCESSOR == declared["preprocessor"]
    assert scorer.MODEL == declared["model"]
    assert scorer.CALIBRATOR == declared["calibrator"]
    assert scorer.THRESHOLD == declared["threshold"]


def test_rank_breaks_probability_ties_by_raw_score_then_input_order():
    probability = np.array([0.2, 0.5, 0.5, 0.5, 0.1])
    raw = np.array([0.3, 0.6, 0.7, 0.6, 0.05])
    rank, decile = batches.rank_and_decile(probability, raw)
    assert rank.tolist() == [4, 2, 1, 3, 5]
    assert decile.tolist() == [7, 3, 1, 5, 9]


@pytest.mark.parametrize("rows", [1, 9, 10, 11, 25, 1000])
def test_deciles_split_the_ranked_list_into_tenths(rows):
    rank, decile = batches.rank_and_decile(np.linspace(1, 0, rows), np.zeros(rows))
    counts = np.bincount(decile, minlength=11)[1:]
    assert decile[rank == 1] == 1 and decile.max() <= 10
    assert counts.max() - counts[counts > 0].min() <= 1  # as even as the row count allows
    assert np.all(np.diff(decile[np.argsort(rank)]) >= 0)


def test_a_model_file_saved_before_the_library_moved_is_one_line_naming_the_rebuild(tmp_path):
    # What a preprocessor pickled before stages/lib/ was split by concern holds: its class by its old module.
    old = tmp_path / "preprocessor.joblib"
    old.write_bytes(b"cstages.lib.features\nCustomerPreprocessor\n)\x81.")
    with pytest.raises(ArtifactError) as raised:
        load_object(old)
    [line] = raised.value.problems
    assert "older version of this project's code" in line and "stages.lib.features" in line
    assert line.endswith("rebuild the model files with `dvc repro`")
