"""Rounding that gives the same bits on every x86-64 CPU.

numpy's float64 exp, log and power run SVML code on AVX-512 CPUs and glibc's
elsewhere; glibc's own exp and log take FMA or non-FMA paths; OpenBLAS picks a
kernel per CPU. Each moves a result by about an ulp. A value written to an
output is rounded first, with exact operations only (frexp, ldexp, rint), so
such a difference survives only for a value within an ulp of a rounding boundary.
"""

from __future__ import annotations

import numpy as np

# 24 significant bits: about 7 decimal digits, finer than any probability needs; a 1-ulp
# difference then changes the rounded value for about 1 value in 2^28.
PROBABILITY_BITS = 24


def round_significant_bits(values, bits: int = PROBABILITY_BITS) -> np.ndarray:
    """Each value rounded to `bits` significant bits (0, inf and nan unchanged)."""
    mantissa, exponent = np.frexp(np.asarray(values, dtype=float))
    return np.ldexp(np.rint(np.ldexp(mantissa, bits)), exponent - bits)


def round_significant_digits(value: float, digits: int) -> float:
    """`value` rounded to `digits` significant decimal digits, by Python's correctly rounded formatting."""
    return float(f"{float(value):.{digits}g}")


def round_linear_model(model, digits: int):
    """A fitted scikit-learn linear model with its coefficients and intercept rounded to `digits`
    significant digits: its solver's BLAS calls move them in the last bits from one CPU kernel to another."""
    model.coef_ = np.vectorize(round_significant_digits)(model.coef_, digits)
    model.intercept_ = np.vectorize(round_significant_digits)(model.intercept_, digits)
    return model
