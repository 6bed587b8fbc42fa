"""Test average precision of the model trained on Dask (compute.engine dask) against the local one.

For each size and seed: generate customers, preprocess them as the pipeline does, fit the final model
once with the local engine (`train_model`) and once with `train_on_dask` on a LocalCluster of worker
processes, and score both on the same test split. With and without linear leaves.

    python -m benchmarks.dask_training --rows 20000 60000 --seeds 1 2 3 --output benchmarks/experiments/dask-training

Writes OUTPUT.json (one record per fit pair) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from benchmarks.markdown import table
from benchmarks.measure import machine
from stages.lib import models
from stages.lib.files import read_json
from stages.lib.params import load_params
from stages.lib.preprocessing import preprocess_customers
from stages.lib.schema import split_features
from stages.lib.synthetic import generate_customers


def compare(rows: list[int], seeds: list[int], workers: int, best_params: dict) -> list[dict]:
    from distributed import Client, LocalCluster
    from sklearn.metrics import average_precision_score

    base = load_params("params.yaml")
    records = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        for count in rows:
            for seed in seeds:
                params = base.model_copy(update={
                    "generate": base.generate.model_copy(update={"rows": count}),
                    "base": base.base.model_copy(update={"seed": seed}),
                })
                customers, _ = generate_customers(params.generate, seed)
                train, test, _ = preprocess_customers(customers, params.data, params.preprocess, seed)
                features, y = split_features(train, params.data.id_columns)
                test_features, test_y = split_features(test, params.data.id_columns)
                for linear in (False, True):
                    best = {**best_params, "linear_tree": linear}
                    local = models.train_model(features, y, params, best)
                    on_dask = models.train_on_dask(features, y, params, best, client)
                    local_ap, dask_ap = (average_precision_score(test_y, model.predict_proba(test_features)[:, 1])
                                         for model in (local, on_dask))
                    records.append({"rows": count, "seed": seed, "linear_tree": linear,
                                    "local": round(local_ap, 4), "dask": round(dask_ap, 4),
                                    "difference": round(dask_ap - local_ap, 4)})
                    print(records[-1], flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 60_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--best-params", default="models/best_params.json",
                        help="the tuned params both engines train with (linear_tree is set by the script)")
    parser.add_argument("--output", required=True, help="writes OUTPUT.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    records = compare(args.rows, args.seeds, args.workers, read_json(args.best_params))
    Path(f"{args.output}.json").write_text(json.dumps({"machine": machine(), "workers": args.workers,
                                                        "runs": records}, indent=2) + "\n")
    print(table(["rows", "seed", "linear leaves", "local", "Dask", "Dask - local"],
                [[f"{r['rows']:,}", str(r["seed"]), "yes" if r["linear_tree"] else "no", f"{r['local']:.4f}",
                  f"{r['dask']:.4f}", f"{r['difference']:+.4f}"] for r in records], "rrlrrr"))


if __name__ == "__main__":
    main()
