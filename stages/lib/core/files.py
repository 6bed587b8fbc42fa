"""Write files atomically; read and write JSON and pickled objects.

A write goes to a temporary file in the destination's directory and is renamed
into place only when complete, so a stage killed at any moment leaves either
the previous complete file or none, never half of one that DVC would cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib

from stages.lib.core.errors import ArtifactError, DataError, OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path, replaces_directory_of: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    With `replaces_directory_of`, a directory at `path` holding only files with those endings
    (an earlier run's partitioned output) is replaced by the file too."""
    path = Path(path)
    if replaces_directory_of and path.is_dir():
        _refuse_foreign_files(path, replaces_directory_of)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed by SIGKILL cannot clean up; the next write of the same file does.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise _cannot_write(path, error) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give outputs the usual permissions.
        os.chmod(tmp, 0o644)
        if replaces_directory_of and path.is_dir():
            _replace_directory(path, tmp)
        else:
            os.replace(tmp, path)
    except OSError as error:
        # Disk full, permission denied, a directory in the way: the user's to fix, not a bug.
        raise _cannot_write(path, error) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | Path, holds: tuple[str, ...]) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; put it in `path`'s place if the block succeeds.

    An existing `path` is replaced only if every file in it ends with one of `holds` (an earlier
    run's output), so a directory of the user's own files is never deleted.
    """
    path = Path(path)
    if path.exists():
        _refuse_foreign_files(path, holds)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmpdir"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    except OSError as error:
        raise _cannot_write(path, error) from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            _replace_directory(path, tmp)
        else:
            os.replace(tmp, path)
    except OSError as error:
        raise _cannot_write(path, error) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refuse_foreign_files(path: Path, holds: tuple[str, ...]) -> None:
    """An output about to be replaced must hold only what an earlier run wrote (names ending with `holds`)."""
    foreign = [p.name for p in path.iterdir()] if path.is_dir() else [path.name]
    foreign = [name for name in foreign if not name.lower().endswith(holds)]
    if foreign:
        raise OutputError(f"{path}: exists and holds {', '.join(sorted(foreign)[:3])}, which this would "
                          "replace; give a new directory for the output")


def _replace_directory(path: Path, new: Path) -> None:
    """Put `new` (a file or directory) in the place of `path`, an existing file or directory."""
    # Two renames: between them `path` is missing, never half written.
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    os.replace(path, old / path.name)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def _cannot_write(path: Path, error: OSError) -> OutputError:
    reason = error.strerror or first_line(error)
    return OutputError(
        f"{path}: cannot write ({reason}); check the folder exists as a folder, "
        "is writable and the disk has space"
    )


def first_line(error: BaseException, limit: int = 160) -> str:
    """The gist of a library's error, short enough for one line on a terminal."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def require_output(path: str | Path) -> Path:
    """A file an earlier stage writes: missing is the user's to fix with `dvc repro` or `dvc pull`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run `dvc repro` (or `dvc pull`) to create it")
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: Any, path: str | Path, indent: int | None = 2) -> None:
    """Write JSON atomically, with sorted keys only where the caller sorted them."""
    text = json.dumps(_json_safe(data), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path: str | Path) -> Any:
    path = require_output(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path}: not valid JSON; run `dvc repro` to rewrite it") from None


def save_object(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        joblib.dump(obj, tmp)


def load_object(path: str | Path) -> Any:
    path = require_output(path)
    try:
        return joblib.load(path)
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("stages."):
            raise ArtifactError(f"{path}: cannot be loaded (it needs the package {error.name!r}); install "
                                "requirements.txt, or rebuild it with `dvc repro`") from None
        # A pickle names the module of each class it holds; those modules moved (stages/lib/ by concern).
        raise ArtifactError(f"{path}: saved by an older version of this project's code, whose module "
                            f"{error.name} no longer exists; rebuild the model files with `dvc repro`") from None
    except AttributeError as error:
        module = getattr(getattr(error, "obj", None), "__name__", "")
        if not module.startswith("stages."):
            raise ArtifactError(f"{path}: cannot be loaded ({first_line(error)}); "
                                "rebuild it with `dvc repro` or fetch it with `dvc pull`") from None
        # The module exists again under its old name, as something else (stages.lib.features is now a package).
        raise ArtifactError(f"{path}: saved by an older version of this project's code, whose module {module} "
                            f"no longer holds {error.name!r}; rebuild the model files with `dvc repro`") from None
    except Exception as error:  # unpickling raises anything: EOFError, UnpicklingError, KeyError...
        raise ArtifactError(f"{path}: cannot be loaded ({first_line(error)}); "
                            "rebuild it with `dvc repro` or fetch it with `dvc pull`") from None
