"""What every tab needs to know about the app it lives in."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from fabe import embedded, paths
from fabe.cleaning.serving import CleanerCache
from fabe.rundir import MetricsFollower, RunDir


@dataclass
class AppContext:
    runs_dir: Path
    roots: list[Path] = field(default_factory=list)  # typed paths must lie inside one (app.py --roots)
    followers: dict[str, MetricsFollower] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cleaners: CleanerCache = field(default_factory=CleanerCache)
    cancels: dict[str, threading.Event] = field(default_factory=dict)  # session -> its generation

    def confine(self, path: str | Path) -> Path:
        """A typed path (an output folder too), resolved, when inside the roots; else OutsideRoots."""
        return paths.confine(path, self.roots)

    def confine_data(self, name: str) -> str:
        """A typed dataset or split: `embedded`, or a confined path."""
        return paths.confine_data(name, self.roots)

    def confine_model(self, name: str) -> str:
        """A typed model or cleaner: `embedded`, a hub id, or a confined path."""
        return paths.confine_model(name, self.roots)

    def split(self, name: str, split: str = "test") -> Path:
        """The file of a typed split: a .jsonl/.json file, a dataset folder's `split` file, or
        that split of the embedded dataset; a path outside the roots is refused unread."""
        return embedded.resolve_split(self.confine_data(name), split)

    def metrics(self, run_id: str) -> dict[str, list]:
        """The run's metrics columns, brought up to date by reading only what was appended.
        One follower per run, shared by every open tab."""
        with self.lock:
            follower = self.followers.setdefault(run_id, MetricsFollower(RunDir(self.runs_dir / run_id)))
            follower.poll()
            return follower.columns
