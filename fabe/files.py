"""Writing files and folders so that a reader never sees half of one.

A file is written to a temporary file beside it, flushed to disk and renamed over the old
one; a folder is filled under a temporary name and renamed into place. On any failure the
temporary is removed and whatever was there before is untouched, so a crash, a full disk
or an interrupted export leaves either the old version or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[str]], None], newline: str | None = None) -> None:
    """Call `write(f)` on a temporary text file beside `path`, fsync it and rename it over
    `path`. The file keeps an existing file's mode (else 0644, not mkstemp's 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=2))


@contextmanager
def folder_atomic(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; renamed to `path` when the block ends
    without an error (an existing `path` is replaced only with `replace`), removed when it
    fails."""
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path}: exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
