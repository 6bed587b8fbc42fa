"""Git and DVC as the pull-request report sees them: revisions, files at a revision, metric diffs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib.core.errors import PipelineError

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Revision:
    label: str   # what the reader sees: "main", "workspace"
    detail: str  # the commit, and whether the work tree has uncommitted changes


def run_command(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}")
        raise PipelineError(f"{what} failed: {message.splitlines()[-1]}")
    return result


def run_dvc(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "dvc", *args], cwd, what)


def dvc_diff(args: list[str], root: Path, warnings: list[str]) -> dict:
    """A `dvc ... diff --json` result; DVC's warnings (e.g. a revision it could not read) are collected.

    DVC still exits 0 when it cannot read the base revision's metrics, and
    reports them as new: the reader must be told, or the report would mislead.
    """
    result = run_dvc([*args, "--json"], root, f"dvc {' '.join(args[:2])}")
    warnings.extend(line.removeprefix("WARNING:").strip() for line in result.stderr.splitlines()
                    if line.startswith("WARNING:"))
    return json.loads(result.stdout or "{}")


def repository_root(start: Path) -> Path:
    result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"{start} is not inside a git repository; run the report from the project's clone")
    return Path(result.stdout.strip())


def describe_revisions(root: Path, base: str) -> tuple[Revision, Revision]:
    resolved = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
                              cwd=root, capture_output=True, text=True)
    if resolved.returncode != 0:
        raise PipelineError(
            f"base revision '{base}' not found; give a branch, tag or commit (in CI, check out with "
            f"fetch-depth: 0 or `git fetch origin {base.removeprefix('origin/')}`)"
        )
    head = run_command(["git", "rev-parse", "--short", "HEAD"], root, "git rev-parse").stdout.strip()
    dirty = run_command(["git", "status", "--porcelain", "--untracked-files=no"], root, "git status").stdout.strip()
    workspace_detail = f"`{head}`" + (" with uncommitted changes" if dirty else "")
    return (Revision(base, f"`{resolved.stdout.strip()[:7]}`"), Revision(WORKSPACE, workspace_detail))


def revision_file(root: Path, revision: str | None, path: str) -> bytes | None:
    """A file's bytes as committed at `revision` (None: as in the workspace), or None when it is not there."""
    if revision is None:
        return (root / path).read_bytes() if (root / path).is_file() else None
    result = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True)
    return result.stdout if result.returncode == 0 else None


def revision_json(root: Path, revision: str | None, path: str) -> Any:
    """A JSON file at a git revision (None: the workspace), or None when absent or unreadable."""
    content = revision_file(root, revision, path)
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None
