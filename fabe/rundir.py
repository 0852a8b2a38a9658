"""The run directory (docs/data.md): the only source of truth about a training run.

`config.json` is written once before training, `status.json` is replaced atomically (write
a temporary file, then rename) so a reader never sees half of it, and `metrics.jsonl` gets
one flushed line per logging or evaluation event, so a crash tears at most the last line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fabe.files import sha256, write_json_atomic

STATES = ("queued", "running", "finished", "failed", "stopped")
METRIC_FIELDS = ("step", "max_steps", "epoch", "loss", "mle_loss", "rank_loss", "eval_loss",
                 "learning_rate", "grad_norm", "s_per_step", "tokens_per_s", "eta_s", "time")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "train.log")
    final_path = property(lambda self: self.path / "final")

    def read_config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def read_status(self) -> dict:
        return json.loads(self.status_path.read_text()) if self.status_path.exists() else {}

    def set_status(self, state: str, **fields: Any) -> dict:
        """Merge `fields` into status.json with the new state; atomic."""
        if state not in STATES:
            raise ValueError(f"Unknown run state: {state}. Should be one of {list(STATES)}")
        status = {**self.read_status(), **fields, "state": state}
        write_json_atomic(self.status_path, status)
        return status

    def append_metrics(self, row: dict) -> None:
        """One line per row. A line torn by a crash (no newline at the file's end) is closed
        first, so the new row starts a line of its own instead of being glued to the torn one."""
        line = json.dumps(row).encode() + b"\n"
        with self.metrics_path.open("a+b") as f:  # writes go to the end whatever the position
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)
            f.flush()

    def read_metrics(self) -> list[dict]:
        """Every complete metrics line; a torn last line (a crash mid-write) is skipped."""
        return self.read_metrics_from(0)[0]

    def read_metrics_from(self, offset: int = 0) -> tuple[list[dict], int]:
        """Rows appended since byte `offset`, and the offset to read from next time. Only
        complete lines are consumed: a line still being written waits for the next read."""
        if not self.metrics_path.exists():
            return [], 0
        with self.metrics_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        rows = []
        for line in data[:end].splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash, followed by later complete lines
        return rows, offset + end

    def checkpoints(self, complete: bool = True) -> list[Path]:
        """checkpoint-N folders, oldest step first; by default only complete ones, as only
        those can be resumed or loaded (a save cut off by a crash or a full disk is not)."""
        found = [p for p in self.path.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
        if complete:
            found = [p for p in found if checkpoint_complete(p)]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def saved_step(self) -> int | None:
        """The step of the last complete checkpoint: where a resume starts again."""
        complete = self.checkpoints()
        return int(complete[-1].name.split("-")[-1]) if complete else None


def checkpoint_complete(folder: Path) -> bool:
    """Trainer writes trainer_state.json last into a checkpoint, so a checkpoint whose
    trainer_state.json is missing or torn was never finished."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


class MetricsFollower:
    """A run's metrics kept current by reading only the lines appended since the last poll,
    as numeric columns (float arrays, NaN where a row lacks the field), so a live chart of a
    long run costs neither re-parsing nor converting old rows. A file that shrank or was
    replaced (a deleted and re-created run) is read afresh. A run resumed from checkpoint N
    logs steps after N again: those rows supersede the ones logged before the crash, so a
    chart never steps back."""

    def __init__(self, run: RunDir):
        self.run = run
        self.offset = 0
        self.identity: tuple[int, int] | None = None
        self.columns: dict[str, np.ndarray] = {}
        self.length = 0

    def poll(self) -> int:
        """Read what was appended; the number of new rows."""
        try:
            st = self.run.metrics_path.stat()
        except FileNotFoundError:
            st = None
        identity = (st.st_dev, st.st_ino) if st else None
        if identity != self.identity or (st and st.st_size < self.offset):
            self.identity, self.offset, self.columns, self.length = identity, 0, {}, 0
        if st is None or st.st_size == self.offset:
            return 0
        rows, self.offset = self.run.read_metrics_from(self.offset)
        keys = {k for row in rows for k, v in row.items() if isinstance(v, (int, float)) or v is None}
        for key in keys | self.columns.keys():
            new = np.array([_number(row.get(key)) for row in rows], dtype=float)
            old = self.columns.get(key, np.full(self.length, np.nan))
            self.columns[key] = np.concatenate([old, new])
        self.length += len(rows)
        step = self.columns.get("step")
        if step is not None and len(rows) and np.any(np.diff(step[-len(rows) - 1:]) < 0):
            keep = _not_superseded(step)
            self.columns = {k: v[keep] for k, v in self.columns.items()}
            self.length = int(keep.sum())
        return len(rows)


def _not_superseded(step: np.ndarray) -> np.ndarray:
    """Rows to keep: where the step falls (a resume), earlier rows at or after it are dropped."""
    restart = np.full(len(step), np.inf)
    falls = np.flatnonzero(np.diff(step) < 0) + 1
    restart[falls] = step[falls]
    later_min = np.minimum.accumulate(restart[::-1])[::-1]  # min over rows j >= i
    later_min = np.append(later_min[1:], np.inf)  # min over rows j > i
    return step < later_min


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else np.nan


def results_dir(source: str | Path, kind: str, name: str, root: str | Path) -> Path:
    """Where results about the model at `source` go: next to its run (`RUN/kind/NAME`; for a
    final/ or checkpoint-N folder, in its run with the folder's name appended), else under
    `root/SOURCE-NAME/NAME`."""
    source = Path(source)
    if source.name.startswith("checkpoint-") or source.name == "final":
        return source.parent / kind / f"{name}-{source.name}"
    if (source / "status.json").exists():
        return source / kind / name
    return Path(root) / source.name / name


HINTS = (
    (r"CUDA out of memory|OutOfMemoryError", "out of GPU memory: lower batch_size or max_length, "
                                             "or turn on gradient checkpointing"),
    (r"no such model folder|cannot load model|not a Hugging Face model folder",
     "the model could not be loaded: check the path or hub id (offline: give a local folder)"),
    (r"DatasetError|: no such file", "the dataset is invalid or missing: run `python -m fabe data check`"),
    (r"No space left on device|Disk quota exceeded|File too large",
     "the disk is full (or a quota or file size limit was hit): free space or lower save_total_limit"),
)


def failure_hint(text: str) -> str | None:
    """What to do about a run that failed with `text` (status.json's `hint`), when known."""
    import re

    for pattern, hint in HINTS:
        if re.search(pattern, text):
            return hint
    return None


def now() -> float:
    return round(time.time(), 3)


def _git_commit() -> str | None:
    """The project's commit when it runs from a git checkout, else None."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=False)
    return result.stdout.strip() or None


def provenance(data_files: list[Path]) -> dict:
    """Package versions, the project's git commit and dataset file hashes, for config.json."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("torch", "transformers", "peft", "tokenizers", "accelerate"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"packages": packages, "python": platform.python_version(), "git_commit": _git_commit(),
            "data": {str(p): sha256(p) for p in data_files}, "created_at": now()}
