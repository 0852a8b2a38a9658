"""Cleaners held in memory for an interactive front end (the app's Clean and Evaluate tabs).

`CleanerCache` keeps each loaded cleaner by source, so a second Load is instant; Unload
drops it and frees its memory; each cleaner has a lock, so one generation runs per loaded
model at a time and other requests wait their turn. `cleaner_sources` lists what can be
loaded: the shipped embedded cleaner, and each run's final model and checkpoints.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fabe import embedded
from fabe.cleaning.cleaner import Cleaner
from fabe.rundir import RunDir


def resolve_source(source: str) -> str:
    """'embedded' -> the shipped cleaner's folder; a local path made absolute; a hub id as is."""
    path = Path(embedded.resolve(source, "cleaner")).expanduser()
    return str(path.resolve()) if path.exists() else source


def cleaner_sources(runs_dir: str | Path) -> list[tuple[str, str]]:
    """(label, source) of every cleaner that can be loaded: the embedded one where shipped,
    then per run (newest first) its final model and its checkpoints (latest first)."""
    found = [("embedded cleaner (shipped)", embedded.EMBEDDED)] if embedded.shipped_cleaner_exists() else []
    runs = [p for p in Path(runs_dir).glob("*") if (p / "status.json").exists()] if Path(runs_dir).is_dir() else []
    for path in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True):
        run = RunDir(path)
        if (run.final_path / "fabe.json").exists():
            found.append((f"{path.name} / final", str(run.final_path)))
        found += [(f"{path.name} / {c.name}", str(c)) for c in reversed(run.checkpoints())]
    return found


class CleanerCache:
    def __init__(self) -> None:
        self._cleaners: dict[str, Cleaner] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def loaded(self) -> list[str]:
        return list(self._cleaners)

    def load(self, source: str) -> Cleaner:
        """The cleaner at `source`, loaded on first use."""
        key = resolve_source(source)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # two first Loads of one model load it once
            if key not in self._cleaners:
                self._cleaners[key] = Cleaner.load(key)
            return self._cleaners[key]

    def unload(self, source: str) -> bool:
        """Forget the cleaner and free its memory; False when it was not loaded."""
        key = resolve_source(source)
        with self._locks.get(key, threading.Lock()):
            cleaner = self._cleaners.pop(key, None)
        if cleaner is None:
            return False
        del cleaner
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    @contextmanager
    def using(self, source: str) -> Iterator[Cleaner]:
        """The loaded cleaner, held exclusively: one generation per model at a time."""
        key = resolve_source(source)
        cleaner = self.load(key)
        with self._locks[key]:
            yield cleaner
