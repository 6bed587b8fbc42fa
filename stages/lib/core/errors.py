"""Errors a user can fix: each message names the problem and the fix.

`stages.lib.core.cli.run_stage` turns them into one line on stderr and a non-zero exit.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a problem the user can fix (bad params, data or artifacts)."""

    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))


class ParamsError(PipelineError):
    """params.yaml is missing a key, has an unknown one or a value out of range."""


class DataError(PipelineError):
    """An input table does not fit the schema in params.yaml."""


class ArtifactError(PipelineError):
    """A model file is missing, stale or does not match dvc.lock."""


class OutputError(PipelineError):
    """An output cannot be written: no space left, no permission, a file where a folder should be."""


class ClusterError(PipelineError):
    """compute.engine dask: the cluster cannot be reached, or lost a worker or its scheduler mid-stage."""
