"""generate: the embedded default dataset, a synthetic e-commerce customer export.

Writes the customer table and, apart, every customer's true purchase
probability, which only `evaluate` reads (stages/lib/data/synthetic.py describes the data).

    python -m stages.generate --output data/raw/customers.csv \
        --probabilities data/raw/true_probability.parquet
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.params import load_params
from stages.lib.core.tables import table_format, write_table
from stages.lib.data.synthetic import TARGET_COLUMN, generate_customers


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.generate")
    parser.add_argument("--output", required=True, help="customer table (.csv or .parquet)")
    parser.add_argument("--probabilities", required=True, help="true purchase probability per customer")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    for output in (args.output, args.probabilities):
        table_format(output)  # an unknown suffix fails now, not after the work
    customers, probabilities = generate_customers(params.generate, params.base.seed)
    write_table(customers, args.output)
    write_table(probabilities, args.probabilities)
    print(f"generate: {len(customers):,} customers, purchase rate {customers[TARGET_COLUMN].mean():.2%}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
