"""Imported at start-up by every Python process of a benchmarked stage (on PYTHONPATH).

With PROPENSITY_PROFILE set to a file, every LightGBM fit and every oversampling
appends its duration there, one JSON line per call, from whichever process ran
it: the stage, and its cross-validation workers too, which import only what the
pickled estimator references (with `resample.method: none`, LightGBM and
imbalanced-learn, never the stages). The pipeline's code knows nothing of this.
Unset: nothing is imported or wrapped.
"""

import functools
import json
import os
import time

PROFILE_ENV = "PROPENSITY_PROFILE"


def _timed(label, function, path):
    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            record = {"event": label, "seconds": time.perf_counter() - start, "pid": os.getpid()}
            # One short append per call: lines from parallel workers do not interleave.
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    return timed


def _install(path):
    try:
        from lightgbm import LGBMClassifier
    except ImportError:
        return  # a process that is not a stage's (dvc itself): nothing to time
    if not hasattr(LGBMClassifier.fit, "__wrapped__"):
        LGBMClassifier.fit = _timed("lightgbm_fit", LGBMClassifier.fit, path)
    try:
        from stages.lib.modeling import resampling
    except ImportError:
        return
    if not hasattr(resampling.oversample, "__wrapped__"):
        # Pickles of the resampler name `stages.lib.modeling.resampling.oversample`: the wrapper, found under that name.
        resampling.oversample = _timed("oversample", resampling.oversample, path)


if os.environ.get(PROFILE_ENV):
    _install(os.environ[PROFILE_ENV])
