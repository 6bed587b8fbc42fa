"""tune: Bayesian search of LightGBM hyperparameters (scikit-optimize's BayesSearchCV).

Cross-validation runs on the processed training split with the resampler inside
each fold, so no synthetic row reaches a validation fold (stages/lib/tuning.py
says why). The test split is never read.

    python -m stages.tune --train data/processed/train.parquet \
        --best-params models/best_params.json --metrics metrics/tune.json \
        --trace metrics/plots/tune_trace.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stages.lib.cli import run_stage, stage_parser
from stages.lib.compute import open_engine
from stages.lib.files import write_json
from stages.lib.models import training_rows
from stages.lib.params import load_params
from stages.lib.tuning import TuningProgress, edge_warning, edges_hit, tune_hyperparameters


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.tune")
    parser.add_argument("--train", required=True, help="processed training split (not resampled)")
    parser.add_argument("--best-params", required=True, help="output: best LightGBM params (JSON)")
    parser.add_argument("--metrics", required=True, help="output: best CV score and settings (JSON)")
    parser.add_argument("--trace", required=True, help="output: score per iteration (plot JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    with open_engine(params.compute) as engine:
        features, y = training_rows(engine, args.train, params, params.tune.sample_size)
        result = tune_hyperparameters(engine, features, y, params,
                                      TuningProgress(params.tune.n_iter, params.tune.scoring))
    edges = edges_hit(result.best_params, params.tune)
    write_json(result.best_params, args.best_params)
    write_json({
        "best_cv_score": result.best_score,
        "scoring": params.tune.scoring,
        "n_iter": params.tune.n_iter,
        "cv_folds": params.tune.cv_folds,
        "early_stopping_rounds": params.tune.early_stopping_rounds,
        "rows": result.rows,
        "best_params": result.best_params,
        # Dimensions whose best value sits on the low or high end of its range: widen those.
        "edges": edges,
    }, args.metrics)
    write_json(result.trace, args.trace)
    warning = edge_warning(edges, result.best_params)
    if warning:
        print(warning, file=sys.stderr)
    print(f"tune: best cross-validated {params.tune.scoring} {result.best_score:.4f} "
          f"after {params.tune.n_iter} iterations on {result.rows:,} rows")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
