"""Whether one score is better than another, or the difference is within the noise: one rule for every claim.

Every comparative sentence the pipeline prints (the model beside the baselines in evaluate and the report,
LightGBM beside the logistic regression in tune, this run beside the base revision in the report) goes
through `compare`: "better" or "worse" only when the 95 % interval of the difference (difference
plus or minus 1.96 standard errors) leaves out zero, "no clear difference" otherwise, always with the
interval. The standard error is the comparison's own: a paired bootstrap of the test rows, the spread of
paired fold differences, or for two runs on the same rows the two runs' bootstrap errors combined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Comparison:
    """`difference` is first minus second (higher is better), with its standard error."""

    difference: float
    standard_error: float | None

    @property
    def known(self) -> bool:
        return self.standard_error is not None and math.isfinite(self.standard_error)

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.known:
            return None
        half = Z_95 * self.standard_error
        return self.difference - half, self.difference + half

    @property
    def verdict(self) -> str:
        """"better", "worse" or "no clear difference", for the first beside the second."""
        interval = self.interval
        if interval is None or interval[0] <= 0.0 <= interval[1]:
            return "no clear difference"
        return "better" if self.difference > 0 else "worse"

    def of(self, subject: str) -> str:
        """The verdict with what it is about: `LightGBM better`, or `no clear difference`."""
        return self.verdict if self.verdict == "no clear difference" else f"{subject} {self.verdict}"

    def evidence(self) -> str:
        """The difference and its interval, e.g. `+0.0220, 95 % interval +0.0060 to +0.0380`."""
        interval = self.interval
        if interval is None:
            return f"{self.difference:+.4f}, no standard error"
        return f"{self.difference:+.4f}, 95 % interval {interval[0]:+.4f} to {interval[1]:+.4f}"


def compare(first: float, second: float, standard_error: float | None) -> Comparison:
    return Comparison(float(first) - float(second), standard_error)


def combined_standard_error(*errors: float | None) -> float | None:
    """The standard error of a difference of independent estimates (two runs' bootstrap errors)."""
    if any(e is None or not math.isfinite(e) for e in errors):
        return None
    return math.sqrt(sum(e * e for e in errors))
