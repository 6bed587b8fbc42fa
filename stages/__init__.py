"""The propensity pipeline.

    stages/<step>.py   one file per DVC stage, run as `python -m stages.<step>`: generate,
                       generate_events, features, preprocess, resample, tune, calibrate, train, evaluate
    stages/predict.py  commands users run that are not DAG steps: scoring new customers
    stages/report.py   and the pull-request report
    stages/lib/        the library they all share; no stage imports another stage

Each command is thin (arguments, read, call the library, write); dvc.yaml lists,
for every stage, its own file, the library modules it imports and the packages
holding them (tests/test_layout.py checks that the list is exact).
"""

import sys

# `python -m stages.<name>` imports this package first, with sys.argv[0] still "-m", and
# only then the stage module, which spends a fraction of a second loading pandas (its main
# loads scikit-learn and LightGBM once the arguments parse, under run_stage's own Ctrl-C
# handling). A Ctrl-C in that time must end the run quietly too, not with a traceback.
if sys.argv[:1] == ["-m"]:
    from stages.lib.core.cli import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()
