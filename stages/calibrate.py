"""calibrate: fit probability calibration and choose the decision threshold, out of fold.

Every training row is scored by a model that never saw it; the calibration is
fitted on those scores and the threshold chosen for the objective in
params.yaml (stages/lib/modeling/calibration.py). The test split is never read.

    python -m stages.calibrate --train data/processed/train.parquet \
        --best-params models/best_params.json --calibrator models/calibrator.joblib \
        --threshold models/threshold.json --metrics metrics/calibrate.json \
        --threshold-curve metrics/plots/threshold.json --threshold-image metrics/plots/threshold.png
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import read_json, save_object, write_json
from stages.lib.core.params import load_params
from stages.lib.data.sampling import sample_features
from stages.lib.engines.base import open_engine
from stages.lib.evaluation import plot_data


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.calibrate")
    parser.add_argument("--train", required=True, help="processed training split (not resampled)")
    parser.add_argument("--best-params", required=True, help="the model family and params tune chose")
    parser.add_argument("--calibrator", required=True, help="output: fitted calibration (joblib)")
    parser.add_argument("--threshold", required=True, help="output: chosen threshold (JSON)")
    parser.add_argument("--metrics", required=True, help="output: out-of-fold metrics (JSON)")
    parser.add_argument("--threshold-curve", required=True, help="output: precision/recall/F1 by threshold")
    parser.add_argument("--threshold-image", required=True, help="output: the threshold curve as PNG")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    # Imported here: scikit-learn, LightGBM and matplotlib load for the work, not for --help.
    from stages.lib.evaluation import images
    from stages.lib.modeling.calibration import calibrate_and_choose
    from stages.lib.modeling.estimators import ChosenModel, Recipe
    from stages.lib.modeling.folds import Timeline

    chosen = ChosenModel.from_json(read_json(args.best_params), args.best_params)
    recipe = Recipe(params.model, params.resample, params.base.seed)
    with open_engine(params.compute.engine) as engine:
        features, y, dates = sample_features(engine, args.train, params.calibration.sample_size, params.base.seed,
                                             params.data.id_columns)
        timeline = Timeline(dates, params.data.gap_periods) if dates is not None else None
        calibrator, threshold, report, curve = calibrate_and_choose(engine, features, y, recipe, params.calibration,
                                                                    params.threshold, chosen, timeline)
    save_object(calibrator, args.calibrator)
    objective = params.threshold
    costs = ({"buyer_value": objective.buyer_value, "contact_cost": objective.contact_cost}
             if objective.objective == "profit" else {})
    write_json({**threshold.to_json(), "objective": objective.objective,
                "calibration": params.calibration.method, **costs}, args.threshold)
    write_json(report, args.metrics)
    write_json(plot_data.downsample_records(curve, "threshold"), args.threshold_curve)
    images.save_figure(images.threshold_figure(curve, threshold.probability, params.threshold.objective),
                        args.threshold_image)
    gain = (f", profit {report['oof_profit']['realised']:,.0f} from {report['oof_profit']['contacts']:,} contacts"
            if "oof_profit" in report else "")
    print(f"calibrate ({params.calibration.method}): threshold {threshold.probability:.4f} "
          f"for {params.threshold.objective}; "
          f"out-of-fold precision {report['oof_precision']:.3f}, recall {report['oof_recall']:.3f}{gain}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
