"""Imported at start-up by every Python process of a benchmarked stage (on PYTHONPATH).

stages.modeling wraps LightGBM's fit in a timer when PROPENSITY_PROFILE is set,
but only in processes that import it. Cross-validation workers import only what
the pickled estimator references: with `resample.method: none` that is LightGBM
and imbalanced-learn, never stages.modeling, so their fits went uncounted.
Importing it here counts them, without changing the pipeline being measured.
"""

import os

if os.environ.get("PROPENSITY_PROFILE"):
    try:
        import stages.modeling  # noqa: F401  (installs the timer)
    except ImportError:
        pass  # a process that is not a stage (dvc itself): nothing to time
