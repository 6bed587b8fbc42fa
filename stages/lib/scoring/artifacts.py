"""Check model files against dvc.lock before anything unpickles them.

A model file in `models/` can be older or newer than the pipeline run that
dvc.lock records: a `git checkout` or `git pull` without `dvc checkout`/`dvc pull`,
a copy from somewhere else, a hand edit. Unpickling such a file would score
customers with a model nobody reviewed (and unpickling runs code), so each
file's md5 must equal the one dvc.lock records for it. DVC 3 records the plain
md5 of the file's bytes (`hash: md5`), which is what `file_md5` computes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from stages.lib.core.errors import ArtifactError

LOCK_FILE = "dvc.lock"
FIX = "run `dvc pull` to fetch the files dvc.lock records, or `dvc repro` to rebuild them"


def find_lock(*starts: str | Path) -> Path | None:
    """The first dvc.lock in any start directory or above it, trying the starts in order."""
    for start in starts:
        directory = Path(start).resolve()
        for candidate in (directory, *directory.parents):
            lock = candidate / LOCK_FILE
            if lock.is_file():
                return lock
    return None


def recorded_md5s(lock: Path) -> dict[str, str]:
    """md5 of every stage output in dvc.lock, by its path relative to the lock's directory."""
    try:
        content = yaml.safe_load(lock.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ArtifactError(f"{lock}: cannot be read ({str(error).splitlines()[0]}); "
                            "restore it with `git checkout -- dvc.lock`") from None
    stages = content.get("stages") if isinstance(content, dict) else None
    if not isinstance(stages, dict):
        raise ArtifactError(f"{lock}: has no stages; restore it with `git checkout -- dvc.lock`")
    md5s: dict[str, str] = {}
    for stage in stages.values():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and "path" in out and "md5" in out:
                md5s[str(out["path"])] = str(out["md5"])
    return md5s


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_artifacts(files: dict[str, Path], lock: Path | None) -> None:
    """Refuse any file that is missing or differs from dvc.lock.

    `files` maps the path dvc.lock records (e.g. "models/model.joblib") to the
    file that will be loaded, which may live elsewhere (`--models`): it must
    hold exactly the bytes the pipeline wrote there.
    """
    if lock is None:
        raise ArtifactError(
            f"no {LOCK_FILE} found in or above the model directory or the current directory, so the model "
            f"files cannot be checked; run inside the repository or pass --lock (e.g. from "
            f"`dvc get <repo-url> {LOCK_FILE}`)"
        )
    recorded = recorded_md5s(lock)
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ArtifactError(f"model file(s) not found: {', '.join(missing)}; {FIX}")
    for lock_path, path in files.items():
        expected = recorded.get(lock_path)
        if expected is None:
            raise ArtifactError(f"{lock} records no md5 for {lock_path}; run `dvc repro` to rebuild the model")
        if file_md5(path) != expected:
            raise ArtifactError(
                f"{path} does not match {lock} (stale or modified model file); {FIX}"
            )

