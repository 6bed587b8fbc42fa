"""What scoring loads: the model files, checked against dvc.lock before anything unpickles them.

`load_scorer` reads the preprocessor, model, calibrator and threshold that the
pipeline wrote (by the paths dvc.yaml gives them; `stages.predict --models DIR`
loads the same file names from DIR) into one `Scorer`, which the one scoring path
(stages.lib.scoring.batches) hands to every batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stages.lib.core.files import load_object, read_json
from stages.lib.core.params_features import FeaturesParams
from stages.lib.modeling.ranking import Threshold
from stages.lib.scoring.artifacts import verify_artifacts

if TYPE_CHECKING:  # unpickling the preprocessor imports its module (and scikit-learn), after predict's set-up
    from stages.lib.data.preprocessor import CustomerPreprocessor

# The files scoring loads, by the path dvc.yaml gives them (`vars: paths:`) and dvc.lock records.
PREPROCESSOR = "models/preprocessor.joblib"
MODEL = "models/model.joblib"
CALIBRATOR = "models/calibrator.joblib"
THRESHOLD = "models/threshold.json"
MODEL_FILES = (PREPROCESSOR, MODEL, CALIBRATOR, THRESHOLD)
DEFAULT_MODELS_DIR = "models"


@dataclass(frozen=True)
class Scorer:
    """Everything needed to turn customer rows into calibrated probabilities, decisions and reasons."""

    preprocessor: CustomerPreprocessor
    model: object
    calibrator: object
    threshold: Threshold
    threads: int = 1
    explain: int = 0                    # reason codes per customer (stages.lib.evaluation.explanations), 0: none
    # Models scored beside this one, by name (evaluate's baselines), each on the same processed features.
    baselines: dict[str, object] = field(default_factory=dict)

    def scores_of(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, raw scores) of processed features."""
        raw = raw_scores(self.model, features, self.threads)
        return np.asarray(self.calibrator.transform(raw), dtype=np.float64), raw


def raw_scores(model, features: pd.DataFrame, threads: int) -> np.ndarray:
    """The model's own probability of buying, for either family (LightGBM with `threads` threads)."""
    # Here, not at the top: predict sets OMP_WAIT_POLICY before LightGBM (and its OpenMP) loads.
    from lightgbm import LGBMClassifier

    if isinstance(model, LGBMClassifier):
        # Prediction is per row, so any thread count gives the same scores.
        return model.predict_proba(features, num_threads=threads)[:, 1]
    return model.predict_proba(features)[:, 1]  # stages.lib.modeling.linear: rounded, the same on any CPU


def model_files(models_dir: str | Path) -> dict[str, Path]:
    """Each file predict loads, keyed by the path dvc.lock records for it."""
    return {name: Path(models_dir) / Path(name).name for name in MODEL_FILES}


def load_scorer(models_dir: str | Path, lock: Path | None, threads: int = 1, explain: int = 0) -> Scorer:
    """Check every model file against dvc.lock, then load them."""
    files = model_files(models_dir)
    verify_artifacts(files, lock)
    return Scorer(preprocessor=load_object(files[PREPROCESSOR]), model=load_object(files[MODEL]),
                  calibrator=load_object(files[CALIBRATOR]), threshold=Threshold.from_json(read_json(files[THRESHOLD])),
                  threads=threads, explain=explain)


FEATURES_SPEC = "models/features.json"   # the features stage's definition, where dvc.lock records it


def load_features_spec(models_dir: str | Path, lock: Path | None) -> FeaturesParams:
    """The definition of the features the model learned from (the features stage's), once it matches
    dvc.lock: what `stages.predict --as-of` builds the customers' features with."""
    path = Path(models_dir) / Path(FEATURES_SPEC).name
    verify_artifacts({FEATURES_SPEC: path}, lock)
    return FeaturesParams.model_validate(read_json(path))
