"""features: the customer x snapshot table, built from the event tables as of each snapshot date.

Reads data.events (the customers table and the event tables features.tables
names) and writes one row per snapshot date (features.snapshots) per customer
who joined before it: windowed counts, sums and means, recency, tenure, the
static attributes and the label (stages/lib/features/as_of.py says how; only
events before a snapshot's cutoff reach its features). Also writes the features'
definition beside the model, so `stages.predict --as-of` builds the same
features from the same code.

    python -m stages.features --events data/raw/events --output data/features/customers.parquet \
        --spec models/features.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.params import load_params
from stages.lib.core.tables import table_format
from stages.lib.engines.base import open_engine
from stages.lib.features.build import build_part, check_inputs, report_lines, write_spec
from stages.lib.features.event_tables import table_path


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.features")
    parser.add_argument("--events", required=True, help="directory of the customers and event tables (data.events)")
    parser.add_argument("--output", required=True, help="the customer x snapshot table (.csv or .parquet)")
    parser.add_argument("--spec", required=True, help="output: the features' definition, for scoring (JSON)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    features = params.features
    table_format(args.output)  # an unknown suffix fails now, not after the work
    customers = table_path(args.events, features.customers)
    cutoffs = [f"{date:%Y-%m-%d}" for date in features.snapshot_dates()]
    unknown = check_inputs(args.events, features, cutoffs)
    with open_engine(params.compute.engine) as engine:
        summaries = engine.write(build_part, customers, [args.output], str(Path(args.events).resolve()),
                                 features, cutoffs, True)
        line, warnings = report_lines(summaries, unknown, cutoffs, features)
    write_spec(features, args.spec)
    for warning in warnings:
        print(warning, file=sys.stderr)
    print(line)


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
