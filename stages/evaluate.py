"""evaluate: score the untouched test split and report what matters for a rare class.

Precision, recall and F1 at the threshold chosen out of fold (and at 0.5, for
comparison), ranking quality (ROC AUC, average precision), probability quality
(Brier, log loss, expected vs. actual buyers), the majority-class baseline, lift
at the top of the list, the models a user would pick instead (stages/lib/evaluation/baselines.py),
each feature's population stability index on the test split (what no drift looks
like: stages/lib/data/drift.py), for a dated table the same snapshot by snapshot
(stages/lib/evaluation/periods.py: the backtest) and, for the generated data, the
distance to the ideal scorer that knows every customer's true probability.

    python -m stages.evaluate --test data/processed/test.parquet --train data/processed/train.parquet \
        --model models/model.joblib --preprocessor models/preprocessor.joblib \
        --calibrator models/calibrator.joblib --threshold models/threshold.json \
        --generated-path data/features/customers.parquet \
        --true-probabilities data/raw/event_true_probability.parquet \
        --generated-path data/raw/customers.csv --true-probabilities data/raw/true_probability.parquet \
        --metrics metrics/metrics.json \
        --plots-dir metrics/plots/evaluate
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import load_object, read_json, write_json
from stages.lib.core.params import load_params
from stages.lib.core.tables import read_table
from stages.lib.data import drift
from stages.lib.data.sampling import read_labels, sample_features
from stages.lib.data.synthetic import true_probabilities_of
from stages.lib.engines.base import open_engine
from stages.lib.evaluation import plot_data
from stages.lib.evaluation.explanations import mean_absolute_contributions
from stages.lib.modeling.ranking import Threshold, ranking_scores
from stages.lib.scoring.batches import score_held_out
from stages.lib.scoring.scorer import Scorer

# Mean absolute contributions are averaged over at most this many test customers (a stratified sample).
CONTRIBUTION_SAMPLE_ROWS = 100_000
# metrics.json lists this many features by mean absolute contribution.
TOP_CONTRIBUTIONS = 10


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.evaluate")
    parser.add_argument("--test", required=True, help="processed test split")
    parser.add_argument("--train", required=True, help="processed training split: the baselines are fitted on it")
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibrator", required=True)
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor: its training distributions "
                        "are the drift reference")
    parser.add_argument("--threshold", required=True, help="threshold chosen by calibrate (JSON)")
    parser.add_argument("--generated-path", action="append", default=[],
                        help="a generated table's path (compared with data.path); repeatable, each with its "
                             "--true-probabilities")
    parser.add_argument("--true-probabilities", action="append", default=[],
                        help="the true probabilities of the generated table named by the --generated-path in the "
                             "same place; used only when data.path is that table")
    parser.add_argument("--metrics", required=True, help="output: metrics JSON")
    parser.add_argument("--plots-dir", required=True, help="output: directory of the test split's plot files")
    args = parser.parse_args(argv)
    if len(args.generated_path) != len(args.true_probabilities):
        parser.error("give each --generated-path its --true-probabilities")
    params = load_params(args.params)
    # Imported here: scikit-learn, LightGBM and matplotlib load for the work, not for --help.
    from stages.lib.evaluation import images
    from stages.lib.evaluation.baselines import baseline_metrics, baselines_note, fit_baselines
    from stages.lib.evaluation.metrics import check_test_labels, evaluate_scores, ideal_scorer_metrics, profit_report
    from stages.lib.evaluation.periods import backtest_records, period_metrics

    id_columns = params.data.id_columns
    check_test_labels(read_labels(args.test), args.test)  # before any work: a split without buyers measures nothing
    saved = read_json(args.threshold)  # the threshold, and with objective profit its costs
    model, calibrator, preprocessor = (load_object(path) for path in (args.model, args.calibrator, args.preprocessor))
    threshold = Threshold.from_json(saved)
    seed, threads = params.base.seed, params.model.threads
    with open_engine(params.compute.engine) as engine:
        train_features, train_y, _ = sample_features(engine, args.train, params.evaluate.baseline_sample_size, seed,
                                                  id_columns)
        scorer = Scorer(preprocessor, model, calibrator, threshold, engine.fit_threads(threads, 1),
                        baselines=fit_baselines(engine, train_features, train_y, seed, threads))
        scores = score_held_out(engine, args.test, scorer, id_columns)
        # What the model leans on, customer by customer: on a stratified sample of the test split.
        explained, _, _ = sample_features(engine, args.test, CONTRIBUTION_SAMPLE_ROWS, seed, id_columns)
        contributions = mean_absolute_contributions(scorer.model, explained, scorer.threads)
    reference = preprocessor.drift_reference
    test_drift = drift.drift_table(reference, scores.drift).set_index("feature")["psi"]
    y, probability, raw = scores.y, scores.probability, scores.raw
    metrics = evaluate_scores(y, probability, raw, threshold, params.evaluate, seed)
    if saved.get("objective") == "profit":
        metrics["profit"] = profit_report(y, probability, threshold.flags(probability, raw), saved["buyer_value"],
                                          saved["contact_cost"])
    metrics["baselines"] = baseline_metrics(scores.baselines, y, params.evaluate.top_fraction,
                                            ranking_scores(probability, raw), params.base.seed)
    truth_path = dict(zip(map(Path, args.generated_path), map(Path, args.true_probabilities))).get(
        Path(params.data.path))
    if truth_path is not None and truth_path.is_file():
        truth = true_probabilities_of(scores.ids, read_table(truth_path), id_columns, scores.dates)
        if truth is not None:
            metrics["ideal"] = ideal_scorer_metrics(y, probability, raw, truth)

    plots_dir = Path(args.plots_dir)
    for name, records in plot_data.test_plot_data(y, probability, raw, threshold, params.evaluate).items():
        write_json(records, plots_dir / name)
    importance, measure = plot_data.feature_importance(model)
    write_json(importance.to_dict(orient="records"), plots_dir / plot_data.FEATURE_IMPORTANCE)
    images.save_figure(images.feature_importance_figure(importance, measure),
                        plots_dir / plot_data.FEATURE_IMPORTANCE_IMAGE)
    write_json(contributions.to_dict(orient="records"), plots_dir / plot_data.CONTRIBUTIONS)
    top = contributions.head(TOP_CONTRIBUTIONS)
    metrics["top_contributions"] = dict(zip(top["feature"], top["mean_abs_contribution"]))
    metrics["test_drift_psi"] = {feature: float(test_drift[feature]) for feature in reference.names()}
    if scores.dates is not None:
        metrics["periods"] = period_metrics(scores.dates, y, probability, raw, threshold, scores.baselines, reference,
                                            scores.drift_by_date)
    write_json(backtest_records(metrics), plots_dir / plot_data.BACKTEST)
    write_json(metrics, args.metrics)
    print(f"evaluate: precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}, "
          f"F1 {metrics['f1']:.3f} at threshold {threshold.probability:.3f}; average precision "
          f"{metrics['average_precision']:.3f}, ROC AUC {metrics['roc_auc']:.3f}")
    if "profit" in metrics:
        gain = metrics["profit"]
        print(f"evaluate: profit on the test split {gain['realised']:,.0f} (expected {gain['expected']:,.0f}) from "
              f"{gain['contacts']:,} contacts; at 0.5: {gain['realised_at_0_5']:,.0f} from "
              f"{gain['contacts_at_0_5']:,}")
    if "periods" in metrics:
        named = ", ".join(f"{date} {numbers['average_precision']:.3f}" if numbers["average_precision"] is not None
                          else f"{date} (one class only)" for date, numbers in metrics["periods"].items())
        print(f"evaluate: out of time, average precision by test snapshot: {named}")
    note = baselines_note(metrics)
    if note:
        print(note)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
