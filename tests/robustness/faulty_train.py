"""`python -m fabe train ...` with one fault injected at a chosen step, for
tests/robustness/test_faults.py. The product has no test hooks: this wrapper patches the
child process only, then runs the real CLI.

usage: python faulty_train.py POINT STEP READY TRAIN_ARGS...

Pausing points (the process writes the file READY, then sleeps until the test SIGKILLs it):
  step     inside the loss of step STEP (mid-step)
  save     checkpoint-STEP has its model and optimizer, not yet its RNG and trainer state
  metrics  half of step STEP's metrics line is written (a torn line)
Failing points (the save of checkpoint-STEP runs out of room and training fails on its own):
  diskfull a filler file leaves the run's filesystem (a small tmpfs) half a checkpoint free
  fsize    RLIMIT_FSIZE (SIGXFSZ ignored) lets no file grow past a quarter of a checkpoint
"""

from __future__ import annotations

import json
import resource
import runpy
import shutil
import signal
import sys
import time
from pathlib import Path


def pause(ready: str) -> None:
    Path(ready).write_text("paused")
    time.sleep(3600)


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def shrink_room(point: str, run_dir: Path) -> None:
    """Leave too little room for the next checkpoint, judged by the size of the last one."""
    last = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    size = folder_size(last)
    if point == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG errors instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 4, resource.RLIM_INFINITY))
        return
    free = shutil.disk_usage(run_dir).free
    with (run_dir.parent / "filler").open("wb") as f:
        f.write(b"\0" * max(free - size // 2, 0))


def install(point: str, step: int, ready: str) -> None:
    from fabe.rundir import RunDir
    from fabe.training.trainer import FabeTrainer

    if point == "step":
        loss = FabeTrainer.compute_loss

        def compute_loss(self, model, *args, **kwargs):
            if model.training and self.state.global_step + 1 == step:
                pause(ready)
            return loss(self, model, *args, **kwargs)

        FabeTrainer.compute_loss = compute_loss
    elif point == "save":
        save_rng = FabeTrainer._save_rng_state

        def _save_rng_state(self, output_dir):
            if self.state.global_step == step:
                pause(ready)
            return save_rng(self, output_dir)

        FabeTrainer._save_rng_state = _save_rng_state
    elif point == "metrics":
        append = RunDir.append_metrics

        def append_metrics(self, row):
            if row.get("step") == step and row.get("loss") is not None:
                text = json.dumps(row)
                with self.metrics_path.open("a") as f:
                    f.write(text[:len(text) // 2])
                pause(ready)
            append(self, row)

        RunDir.append_metrics = append_metrics
    elif point in ("diskfull", "fsize"):
        save = FabeTrainer._save_checkpoint

        def _save_checkpoint(self, model, trial):
            if self.state.global_step == step:
                shrink_room(point, Path(self.args.output_dir))
            return save(self, model, trial)

        FabeTrainer._save_checkpoint = _save_checkpoint
    else:
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    sys.argv = ["fabe", "train", *sys.argv[4:]]
    runpy.run_module("fabe", run_name="__main__", alter_sys=True)
