"""The floor of plain scoring: the fewest steps this stack takes from the customers' CSV to their scores.

One process, each step the fastest way the pinned libraries offer it, nothing else: pyarrow's
multi-threaded CSV reader, the trained preprocessor's transform of the whole table at once,
LightGBM's predict on every usable core, the calibrator, and pyarrow's CSV writer for the IDs and
probabilities. No file checks, ranks, deciles, decisions, drift counts or chunks: what
`stages.predict` does beyond this is its cost over the floor, which the `scoring` kind measures in
the same rounds (benchmarks/scoring.py).

    PYTHONPATH=. python benchmarks/scoring_floor.py --models models --input customers.csv --output scores.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# As stages.predict sets it, before LightGBM's OpenMP loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from stages.lib.core.cores import usable_cores
    from stages.lib.core.files import load_object
    from stages.lib.scoring.scorer import CALIBRATOR, MODEL, PREPROCESSOR, model_files, raw_scores

    files = model_files(args.models)
    preprocessor, model, calibrator = (load_object(files[name]) for name in (PREPROCESSOR, MODEL, CALIBRATOR))
    customers = pa_csv.read_csv(args.input).to_pandas()
    features = preprocessor.transform(customers)
    probability = np.asarray(calibrator.transform(raw_scores(model, features, usable_cores())), dtype=np.float64)
    ids = {name: pa.array(customers[name]) for name in preprocessor.id_columns}
    pa_csv.write_csv(pa.table({**ids, "purchase_probability": probability}), args.output)


if __name__ == "__main__":
    main(sys.argv[1:])
