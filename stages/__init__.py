"""The propensity pipeline: one module per DVC stage, each run as `python -m stages.<name>`."""

import sys

# `python -m stages.<name>` imports this package first, with sys.argv[0] still "-m", and
# only then the stage module, which spends seconds loading pandas, scikit-learn and
# LightGBM. A Ctrl-C in those seconds must end the run quietly too, not with a traceback.
if sys.argv[:1] == ["-m"]:
    from stages.cli import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()
