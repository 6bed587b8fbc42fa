"""train: fit the model family tune chose on the resampled training split, with the tuned params.

Writes the fitted classifier (joblib, what `evaluate` and `predict` load) and a
text model: LightGBM's own (readable, loads without Python), or the logistic
regression's coefficient table.

    python -m stages.train --train data/resampled/train.parquet \
        --best-params models/best_params.json --model models/model.joblib \
        --model-text models/model.txt
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import atomic_path, read_json, save_object
from stages.lib.core.params import load_params
from stages.lib.engines.base import open_engine


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.train")
    parser.add_argument("--train", required=True, help="resampled training table")
    parser.add_argument("--best-params", required=True, help="the model family and params tune chose")
    parser.add_argument("--model", required=True, help="output: fitted classifier (joblib)")
    parser.add_argument("--model-text", required=True,
                        help="output: LightGBM's text model, or the logistic regression's coefficients")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    # Imported here: scikit-learn, imbalanced-learn and LightGBM load for the work, not for --help.
    from stages.lib.modeling.estimators import LIGHTGBM, ChosenModel, Recipe, model_text, train_model

    chosen = ChosenModel.from_json(read_json(args.best_params), args.best_params)
    recipe = Recipe(params.model, params.resample, params.base.seed)
    with open_engine(params.compute.engine) as engine:
        model, rows = train_model(engine, args.train, recipe, params.data.id_columns, chosen.params, chosen.family)
    save_object(model, args.model)
    with atomic_path(args.model_text) as tmp:
        tmp.write_text(model_text(model))
    size = (f"{model.booster_.num_trees()} trees" if chosen.family == LIGHTGBM
            else f"logistic regression, C={chosen.params.get('C', 1.0):g}")
    print(f"train: {size} on {rows:,} rows, {model.n_features_in_} features")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
