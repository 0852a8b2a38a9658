"""Progress of long jobs as one line of text: the count done, the rate and the time left
(`16/100 records, 2.1 s/record, about 2 min 56 s left`). The CLI shows tqdm's bar; the page
passes this line to its progress bar, which by itself shows neither a rate nor an ETA."""

from __future__ import annotations

import time
from typing import Callable

Report = Callable[[int, int], None]  # progress(done, total), called by the library's long jobs


def duration(seconds: float) -> str:
    """`45 s`, `2 min 56 s`, `1 h 04 min`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Eta:
    """Counts, rate and time left of one job, measured from the first report (so loading
    a model before the first item is not taken for the items' pace)."""

    def __init__(self, unit: str, clock: Callable[[], float] = time.monotonic):
        self.unit = unit
        self.clock = clock
        self.start: float | None = None
        self.first = 0

    def text(self, done: int, total: int) -> str:
        now = self.clock()
        if self.start is None:
            self.start, self.first = now, done
        counted = f"{done}/{total} {self.unit}"
        if done <= self.first or now <= self.start:
            return f"{counted}, measuring the pace"
        per_item = (now - self.start) / (done - self.first)
        pace = f"{per_item:.1f} s/{self.unit.rstrip('s')}" if per_item >= 1 else f"{1 / per_item:.1f} {self.unit}/s"
        return f"{counted}, {pace}, about {duration(per_item * (total - done))} left"
