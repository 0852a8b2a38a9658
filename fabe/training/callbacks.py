"""Trainer callbacks that keep the run directory current and stop a run cleanly.

`RunMetricsCallback` turns each Trainer log event into one `metrics.jsonl` line with the
fields of docs/data.md, s/step, tokens/s and ETA included, so the page never talks to the trainer (and a
readable line in train.log).
`GracefulStop` turns SIGTERM (what the run manager sends) into "save a checkpoint and stop"
at the end of the current step, so a stopped run resumes where it left off.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from transformers import TrainerCallback

from fabe.rundir import METRIC_FIELDS, RunDir, now

logger = logging.getLogger(__name__)


class RunMetricsCallback(TrainerCallback):
    def __init__(self, run: RunDir):
        self.run = run
        self._last: tuple[float, int, int] | None = None  # (time, step, tokens seen) at the previous log
        self.s_per_step: float | None = None
        self.tokens_per_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs: Any) -> None:
        self._last = (time.time(), state.global_step, 0)  # a resumed trainer counts tokens from 0 again

    def _timing(self, step: int, tokens: int | None) -> None:
        t = time.time()
        if self._last is not None and step > self._last[1]:
            self.s_per_step = (t - self._last[0]) / (step - self._last[1])
            if tokens is not None and t > self._last[0]:
                self.tokens_per_s = (tokens - self._last[2]) / (t - self._last[0])
            self._last = (t, step, tokens if tokens is not None else self._last[2])

    def on_log(self, args, state, control, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "loss" not in logs and "eval_loss" not in logs:
            return  # the end-of-training summary
        if "loss" in logs:
            self._timing(state.global_step, logs.get("tokens_seen"))
        row: dict[str, Any] = {k: None for k in METRIC_FIELDS}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        row.update(step=state.global_step, max_steps=state.max_steps,
                   epoch=round(state.epoch or 0.0, 4), time=now())
        if self.s_per_step is not None:
            row["s_per_step"] = round(self.s_per_step, 4)
            row["eta_s"] = round(self.s_per_step * max(state.max_steps - state.global_step, 0), 1)
        if self.tokens_per_s is not None and "loss" in logs:
            row["tokens_per_s"] = round(self.tokens_per_s, 1)
        self.run.append_metrics(row)
        logger.info(progress_line(row))


def progress_line(row: dict[str, Any]) -> str:
    """One train.log line per metrics row, so the log tail shows where the run is."""
    parts = [f"step {row['step']}/{row['max_steps']}"]
    for key, fmt in (("loss", "{:.4f}"), ("mle_loss", "{:.4f}"), ("rank_loss", "{:.4f}"),
                     ("eval_loss", "{:.4f}"), ("learning_rate", "{:.2e}"), ("grad_norm", "{:.3f}"),
                     ("s_per_step", "{:.3f}"), ("tokens_per_s", "{:.0f}")):
        if row.get(key) is not None:
            parts.append(f"{key} " + fmt.format(row[key]))
    if row.get("eta_s") is not None:
        parts.append(f"eta {int(row['eta_s']) // 60}m")
    return "  ".join(parts)


class GracefulStop(TrainerCallback):
    """On SIGTERM: finish the current step, save a checkpoint, stop."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._request)

    def restore(self) -> None:
        """Put back the SIGTERM handler that was there before."""
        signal.signal(signal.SIGTERM, self._previous)

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
