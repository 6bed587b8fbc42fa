"""The probability calibration saved with the model: none, sigmoid (Platt) or isotonic.

It is pickled, and evaluate and predict load it, so it lives in this small
module with only NumPy and scikit-learn imports: scoring does not pay for the
calibrate stage's imports (matplotlib, imbalanced-learn).
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from stages.lib.core.exact import round_linear_model, round_significant_bits

EPSILON = 1e-6
# Sigmoid calibration's outputs are the same bits on every x86-64 CPU: its two coefficients come
# from L-BFGS, whose BLAS calls (OpenBLAS picks a kernel per CPU) move them in the last bit, so
# they are rounded to 8 significant digits (a margin of 10^7); its probabilities go through
# np.log and exp (SVML or glibc, FMA or not), so they are rounded to 24 bits (stages.lib.core.exact).
COEFFICIENT_DIGITS = 8


class ProbabilityCalibrator:
    """Maps raw model scores to probabilities: none, sigmoid (Platt) or isotonic."""

    def __init__(self, method: str):
        self.method = method

    def fit(self, scores: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        if self.method == "sigmoid":
            self.mapping_ = round_linear_model(LogisticRegression(C=1e6).fit(self._logit(scores), y),
                                               COEFFICIENT_DIGITS)
        elif self.method == "isotonic":
            self.mapping_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
        return self

    @staticmethod
    def _logit(scores: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(scores, dtype=float), EPSILON, 1 - EPSILON)
        return np.log(clipped / (1 - clipped)).reshape(-1, 1)

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "sigmoid":
            return round_significant_bits(self.mapping_.predict_proba(self._logit(scores))[:, 1])
        if self.method == "isotonic":
            return self.mapping_.predict(scores)
        return scores
