"""The search's progress line on the terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm


class TuningProgress:
    """A skopt callback that keeps a tqdm progress line on the terminal during the search.

    Iterations done, best score so far, elapsed time and an estimate of the time
    left. tqdm stays silent when the stream is not a terminal (CI, logs,
    `dvc repro > file`), so logs get no carriage returns.
    """

    def __init__(self, n_iter: int, scoring: str, stream: TextIO | None = None):
        self.scoring = scoring
        self.bar = tqdm(total=n_iter, desc="tune", unit="iteration", file=stream if stream is not None else sys.stderr,
                        disable=None, dynamic_ncols=True)

    def __call__(self, result: Any) -> bool:
        # skopt minimises, so it holds the negated cross-validated scores.
        best = -float(np.min(result.func_vals))
        self.bar.set_postfix_str(f"best {self.scoring} {best:.4f}", refresh=False)
        self.bar.update(len(result.func_vals) - self.bar.n)
        return False  # never stop the search early

    def close(self) -> None:
        self.bar.close()
