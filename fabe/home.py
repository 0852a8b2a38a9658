"""$FABE_HOME (default ~/.cache/fabe): where the embedded defaults (the tiny base model, the
generated dataset) are made on first use, once, even when two processes ask at the same time."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def fabe_home() -> Path:
    return Path(os.environ.get("FABE_HOME", "~/.cache/fabe")).expanduser()


def made_once(path: Path, marker: str, make: Callable[[], object]) -> Path:
    """`path`, calling `make()` first unless `path/marker` exists; concurrent callers wait
    on a lock file beside `path` instead of making it twice."""
    if (path / marker).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / marker).exists():
            make()
    return path
