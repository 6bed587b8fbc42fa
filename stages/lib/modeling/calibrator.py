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
SIGMOID_FLOOR = 2.0**-24


class ProbabilityCalibrator:
    """Maps raw model scores to probabilities: none, sigmoid (Platt) or isotonic."""

    def __init__(self, method: str):
        self.method = method

    def fit(self, scores: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        if self.method == "sigmoid":
            self.mapping_ = round_linear_model(LogisticRegression(C=1e6).fit(self._logit(scores), y),
                                               COEFFICIENT_DIGITS)
        elif self.method == "isotonic":
            self.x_, self.y_ = isotonic_steps(np.asarray(scores, dtype=float), np.asarray(y, dtype=float))
        return self

    @staticmethod
    def _logit(scores: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(scores, dtype=float), EPSILON, 1 - EPSILON)
        return np.log(clipped / (1 - clipped)).reshape(-1, 1)

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.method == "sigmoid":
            # Rounded to 24 bits, a probability within 2^-25 of 1 would be exactly 1 (and an underflow 0).
            return np.clip(round_significant_bits(self.mapping_.predict_proba(self._logit(scores))[:, 1]),
                           SIGMOID_FLOOR, 1.0 - SIGMOID_FLOOR)
        if self.method == "isotonic":
            # Linear between the steps, flat beyond the ends (IsotonicRegression's out_of_bounds="clip").
            return np.interp(scores, self.x_, self.y_)
        return scores


def isotonic_steps(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IsotonicRegression's step points, with no probability of exactly 0 or 1.

    Isotonic regression gives its lowest block the block's buyer rate, 0 when it holds no buyer (and its
    highest 1 when it holds no non-buyer): a decision that weighs a probability treats those customers as
    certain. An end block of n rows without a buyer gets instead the Jeffreys estimate 0.5 / (n + 1), the
    posterior mean of a rate with 0 buyers in n under the Beta(1/2, 1/2) prior (the top end mirrored), capped
    by its neighbour's value so the mapping stays non-decreasing; ties are broken by the raw score downstream,
    so the ranking is the isotonic one.
    """
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
    x, values = fitted.X_thresholds_.astype(float), fitted.y_thresholds_.astype(float).copy()
    at = fitted.predict(scores)
    if values[0] == 0.0:
        empty = values == 0.0
        inside = values[~empty]
        values[empty] = min(0.5 / (np.count_nonzero(at == 0.0) + 1), inside[0] if len(inside) else 0.5)
    if values[-1] == 1.0:
        full = values == 1.0
        inside = values[~full]
        values[full] = max(1.0 - 0.5 / (np.count_nonzero(at == 1.0) + 1), inside[-1] if len(inside) else 0.5)
    return x, values
