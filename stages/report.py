"""report: a Markdown report of how the workspace changes the model, against a base revision.

For a pull request: the test-split metrics (precision, recall, F1, average
precision and the threshold first), every parameter that changed, the curves of
both revisions drawn on one chart, the PNG plots side by side, and the
interactive `dvc plots diff` page. Metrics and plots are compared as committed
at the base and as they are in the workspace, so run `dvc repro` first.

    python -m stages.report --base main --output report.md
    python -m stages.report --base origin/main --output report.md --plots-dir dvc_plots
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stages.lib.core.cli import run_stage, stage_parser
from stages.lib.core.files import atomic_path
from stages.lib.report.revisions import repository_root


def main(argv: Sequence[str]) -> None:
    parser = stage_parser(__doc__, "stages.report", reads_params=False)
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--output", required=True, help="output: the Markdown report")
    parser.add_argument("--plots-dir", default="dvc_plots",
                        help="output: directory of the report's images and the plots page (default: dvc_plots)")
    args = parser.parse_args(argv)
    root = repository_root(Path.cwd())
    from stages.lib.report.markdown import build_report  # here: matplotlib loads for the work, not for --help

    output = Path(args.output).resolve()
    report = build_report(root, args.base, Path(args.plots_dir).resolve(), output.parent)
    with atomic_path(output) as tmp:
        tmp.write_text(report)
    print(f"report: wrote {args.output} (base {args.base})")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
