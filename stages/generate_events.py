"""generate_events: the embedded default event tables, customers with their orders and website sessions.

Writes `customers`, `orders` and `sessions` (parquet, into the --output
directory) and, apart, the true purchase probability of every customer at every
snapshot date, which only `evaluate` reads (stages/lib/data/events.py describes
the data). Reads generate (rows, snapshots, purchase_rate, truth), base.seed
and features.label_window_days (the label the truth is the probability of).

    python -m stages.generate_events --output data/raw/events \
        --probabilities data/raw/event_true_probability.parquet
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.params import load_params
from stages.lib.core.tables import table_format, write_table
from stages.lib.data.behaviour import SNAPSHOT_COLUMN
from stages.lib.data.events import CUSTOMERS_TABLE, EVENT_TABLES, generate_events, labels_of


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.generate_events")
    parser.add_argument("--output", required=True, help="directory of the event tables (one .parquet file each)")
    parser.add_argument("--probabilities", required=True,
                        help="true purchase probability per customer and snapshot date (.csv or .parquet)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    table_format(args.probabilities)  # an unknown suffix fails now, not after the work
    label_window_days = params.features.label_window_days
    tables, truth = generate_events(params.generate, label_window_days, params.base.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for name in (CUSTOMERS_TABLE, *EVENT_TABLES):
        write_table(tables[name], output / f"{name}.parquet")
    write_table(truth, args.probabilities)
    snapshots = truth[SNAPSHOT_COLUMN].nunique()
    rate = labels_of(tables["orders"], truth, label_window_days).mean()
    print(f"generate_events: {len(tables[CUSTOMERS_TABLE]):,} customers, {len(tables['sessions']):,} sessions, "
          f"{len(tables['orders']):,} orders; purchase rate {rate:.2%} over "
          f"{snapshots} snapshot{'s' if snapshots != 1 else ''}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
