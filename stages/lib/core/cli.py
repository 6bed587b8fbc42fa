"""The command-line shell every stage shares: arguments, params, error reporting.

A stage's `main(argv)` parses its arguments with `stage_parser`, loads params
with `stages.lib.core.params.load_params`, calls plain functions and writes outputs.
`run_stage` maps a PipelineError to one line on stderr and exit code 2, and
Ctrl-C to a short message and 130, without a traceback unless `--debug` or
PROPENSITY_DEBUG=1 asks for one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from stages.lib.core.errors import PipelineError

DEBUG_ENV = "PROPENSITY_DEBUG"

EXIT_BAD_INPUT = 2  # as argparse
EXIT_OUT_OF_MEMORY = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def stage_parser(module_doc: str, prog: str, reads_params: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=module_doc.strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if reads_params:
        parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)")
    return parser


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


INTERRUPTED_MESSAGE = "interrupted: outputs were left as they were; run the stage again"


def _interrupt_on_sigterm(signum, frame):
    # SIGTERM (`kill`, a CI timeout) unwinds like Ctrl-C, so temporary files are removed.
    raise KeyboardInterrupt


def _leave_before_start(signum, frame):
    # Nothing is written while a stage still loads its libraries: leave at once, without
    # the traceback of whichever pandas or LightGBM import was running.
    os.write(sys.stderr.fileno(), (INTERRUPTED_MESSAGE + "\n").encode())
    os._exit(EXIT_INTERRUPTED)


def exit_quietly_on_interrupt() -> None:
    """Ctrl-C or SIGTERM before `run_stage` starts exits with 130 and one line."""
    signal.signal(signal.SIGINT, _leave_before_start)
    signal.signal(signal.SIGTERM, _leave_before_start)


def run_stage(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        main(argv)
    except PipelineError as error:
        if debug:
            traceback.print_exc()
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("error: out of memory; lower generate.rows, set tune.sample_rows, "
              "or use a machine with more memory", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY
    return 0
