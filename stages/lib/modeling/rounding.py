"""scikit-optimize made to give the same search on every x86-64 CPU: rounded points, acquisition by sampling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from skopt import BayesSearchCV, Optimizer
from skopt.space import Categorical, Integer
from skopt.utils import dimensions_aslist

from stages.lib.core.exact import round_significant_digits

# Every point the search evaluates is rounded to this many significant digits
# (RoundingOptimizer). With acq_optimizer="sampling" (RoundingBayesSearchCV) a
# proposal is one of skopt's random candidates, whose log-uniform values (10**u)
# differ by 1 ulp between CPUs with and without AVX-512; 6 digits leave a margin
# of 10^10, are finer than any LightGBM hyperparameter needs, and are what
# LightGBM itself keeps in model.txt.
SIGNIFICANT_DIGITS = 6


def round_to_dimension(value: Any, dimension: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """`value` as the search evaluates and records it: the same on every CPU, inside the dimension.

    Real, log-uniform prior: `digits` significant digits of the value (the same
    relative step in every decade). Real, uniform prior: an absolute step of
    `digits` significant digits of the range (a range through zero gets no
    needlessly fine steps near zero). Both are Python's correctly rounded
    decimal rounding, then clipped to [low, high]. Integer and Categorical
    points are exact already: returned as Python values.
    """
    if isinstance(dimension, Categorical):
        return value.item() if hasattr(value, "item") else value
    if isinstance(dimension, Integer):
        return int(value)
    low, high = float(dimension.low), float(dimension.high)
    if dimension.prior == "log-uniform":
        rounded = round_significant_digits(value, digits)
    else:
        rounded = round(float(value), digits - 1 - math.floor(math.log10(high - low)))
    return min(max(rounded, low), high)


class RoundingOptimizer(Optimizer):
    """skopt's Optimizer whose every proposal is rounded (round_to_dimension) before it is returned.

    The rounded point is what is evaluated and told back, so the Gaussian process
    is fitted on rounded points only and the search continues from them. Random
    initial points are rounded too: skopt draws log-uniform values as 10**u, and
    numpy's float64 power differs in the last bit between CPUs. Batches
    (tune.n_points > 1) lie to a copy of the optimizer, a RoundingOptimizer too.
    """

    def round_point(self, point: Sequence[Any]) -> list[Any]:
        return [round_to_dimension(value, dimension) for value, dimension in zip(point, self.space.dimensions)]

    def _ask(self):
        return self.round_point(super()._ask())

    def copy(self, random_state=None):
        copied = super().copy(random_state=random_state)
        copied.__class__ = type(self)  # Optimizer.copy (scikit-optimize 0.10.2) builds a plain Optimizer
        return copied


class RoundingBayesSearchCV(BayesSearchCV):
    """BayesSearchCV driven by a RoundingOptimizer that minimises the acquisition by sampling.

    Rounding alone is not enough: the Gaussian process's kernel hyperparameters
    come out of L-BFGS about 1e-5 apart between OpenBLAS kernels, and skopt's
    default acquisition optimiser (L-BFGS from 5 starts) turns that into
    proposals 1e-4 apart or at another local minimum. With
    acq_optimizer="sampling" a proposal is the best of 10,000 candidates drawn
    from the search's own random state: the same candidates on every CPU (up to
    the rounding), and the same winner unless two are within 1e-5 of each other.
    """

    def _make_optimizer(self, params_space):
        # BayesSearchCV._make_optimizer (scikit-optimize 0.10.2) with the optimizer class changed.
        kwargs = self.optimizer_kwargs_.copy()
        kwargs.setdefault("acq_optimizer", "sampling")
        kwargs["dimensions"] = dimensions_aslist(params_space)
        optimizer = RoundingOptimizer(**kwargs)
        for i in range(len(optimizer.space.dimensions)):
            if optimizer.space.dimensions[i].name is None:
                optimizer.space.dimensions[i].name = list(sorted(params_space.keys()))[i]
        return optimizer
