"""tune: choose the model that ships (model.family) and its params.

LightGBM's hyperparameters by Bayesian search (scikit-optimize's BayesSearchCV),
the logistic regression's strength by a grid search; with model.family auto both,
then the two tuned models compared on fresh folds (stages/lib/modeling/search.py says how).
Cross-validation runs on the processed training split with the resampler inside
each fold, so no synthetic row reaches a validation fold; for a dated table the
folds are in time order. The test split is never read.

    python -m stages.tune --train data/processed/train.parquet \
        --best-params models/best_params.json --metrics metrics/tune.json \
        --trace metrics/plots/tune_trace.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import write_json
from stages.lib.core.params import load_params
from stages.lib.data.sampling import sample_features
from stages.lib.engines.base import open_engine
from stages.lib.modeling.edges import edge_warning, edges_hit


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.tune")
    parser.add_argument("--train", required=True, help="processed training split (not resampled)")
    parser.add_argument("--best-params", required=True,
                        help="output: the model family that ships and its params (JSON)")
    parser.add_argument("--metrics", required=True, help="output: cross-validated scores, the comparison and the "
                        "choice (JSON)")
    parser.add_argument("--trace", required=True, help="output: score per search iteration (plot JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    # Imported here: scikit-learn, LightGBM and scikit-optimize load for the work, not for --help.
    from stages.lib.modeling.estimators import LOGISTIC_REGRESSION, Recipe
    from stages.lib.modeling.family import choose_model
    from stages.lib.modeling.folds import Timeline
    from stages.lib.modeling.progress import TuningProgress

    searches = params.model.family != LOGISTIC_REGRESSION
    recipe = Recipe(params.model, params.resample, params.base.seed)
    with open_engine(params.compute.engine) as engine:
        features, y, dates = sample_features(engine, args.train, params.tune.sample_size, params.base.seed,
                                             params.data.id_columns)
        timeline = Timeline(dates, params.data.gap_periods) if dates is not None else None
        choice = choose_model(engine, features, y, recipe, params.tune,
                              TuningProgress(params.tune.n_iter, params.tune.scoring) if searches else None, timeline)
    metrics = {"family": choice.chosen.family, "scoring": params.tune.scoring, "cv_folds": params.tune.cv_folds,
               "rows": choice.rows}
    warning = None
    if choice.search is not None:
        edges = edges_hit(choice.search.best_params, params.tune, choice.rows)
        warning = edge_warning(edges, choice.search.best_params, params.tune, choice.rows)
        metrics["lightgbm"] = {
            "best_cv_score": choice.search.best_score,
            "n_iter": params.tune.n_iter,
            "early_stopping_rounds": params.tune.early_stopping_rounds,
            "best_params": choice.search.best_params,
            # Dimensions whose best value sits on the low or high end of its range: widen those.
            "edges": edges,
        }
        scaled = {name: [dim.low, dim.high] for name, dim in params.tune.space_searched(choice.rows).items()
                  if params.tune.search_space[name].of_rows}
        if scaled:
            # The bounds a dimension of_rows had on these rows: its searched range in LightGBM's terms.
            metrics["lightgbm"]["bounds_searched"] = scaled
    if choice.linear is not None:
        metrics["logistic_regression"] = {"best_cv_score": choice.linear.best_score, "C": choice.linear.C}
    if choice.comparison is not None:
        metrics["comparison"] = choice.comparison.to_json()
    write_json(choice.chosen.to_json(), args.best_params)
    write_json(metrics, args.metrics)
    write_json(choice.trace, args.trace)
    if warning:
        print(warning, file=sys.stderr)
    print(choice.summary(params.tune.scoring))


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
