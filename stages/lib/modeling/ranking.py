"""The order of customers and the decision at the threshold.

Probabilities come from the calibrator; the order of customers comes from the
model's own (raw) score as well: customers are ranked by calibrated probability,
and ties in it, which isotonic calibration makes by the thousand, are broken by
the raw score. Calibration is monotone, so this is the raw score's order and no
ranking number (average precision, ROC AUC, gains, lift, precision at k) loses
anything to calibration. `evaluate`'s metrics and `stages.predict`'s `rank` use
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def ranking_scores(probability: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """A score whose order is calibrated probability, then raw score; equal only where both are."""
    probability, raw = np.asarray(probability, dtype=np.float64), np.asarray(raw, dtype=np.float64)
    order = np.lexsort((raw, probability))  # ascending: probability first, raw score second
    p, r = probability[order], raw[order]
    new_value = np.ones(len(order), dtype=bool)
    new_value[1:] = (p[1:] != p[:-1]) | (r[1:] != r[:-1])
    scores = np.empty(len(order), dtype=np.float64)
    scores[order] = np.cumsum(new_value)
    return scores


def best_first(probability: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Row indices from the most to the least likely buyer; full ties keep input order."""
    rows = len(probability)
    # lexsort sorts by its last key first: probability, then raw score, then input order.
    return np.lexsort((np.arange(rows), -np.asarray(raw, dtype=np.float64),
                       -np.asarray(probability, dtype=np.float64)))


@dataclass(frozen=True)
class Threshold:
    """Flag customers whose calibrated probability reaches `probability`.

    With `raw` set (a contact budget), a customer whose probability equals the
    threshold is flagged only if their raw score reaches `raw` too, so the budget
    flags exactly its share of the list even where calibration tied the scores.
    """

    probability: float
    raw: float | None = None

    def flags(self, probability: np.ndarray, raw: np.ndarray) -> np.ndarray:
        probability = np.asarray(probability, dtype=np.float64)
        if self.raw is None:
            return probability >= self.probability
        return (probability > self.probability) | ((probability == self.probability)
                                                    & (np.asarray(raw, dtype=np.float64) >= self.raw))

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.probability, "raw_threshold": self.raw}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Threshold:
        raw = record.get("raw_threshold")
        return cls(float(record["threshold"]), None if raw is None else float(raw))
