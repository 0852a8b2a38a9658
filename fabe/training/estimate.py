"""How long a run will take, said before it is launched: a timed probe of the real trainer on
the run's own config, model and data (a few optimizer steps after one warm-up step, one
evaluation batch and one model save), scaled to the run's steps, evaluations and checkpoints.

The probe runs in a child process (`python -m fabe estimate`) when the page asks, so the
model it loads, and the CUDA memory it holds, go away with it before the run is launched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabe.training.config import TrainConfig

WARMUP_STEPS = 1  # the first step (the sampler's longest batch, kernels compiled) is not timed


@dataclass
class Estimate:
    """A run's expected duration and the measurements it is made of."""

    total_s: float
    steps: int  # optimizer steps of the whole run
    s_per_step: float  # measured, after the warm-up step
    probe_steps: int  # how many steps were timed
    evals: int  # evaluations during the run
    eval_s: float  # one evaluation over the eval set (scaled from the timed batches)
    eval_records: int
    saves: int  # checkpoints written (and the final model)
    save_s: float  # one model save
    load_s: float  # model load and data encoding
    device: str

    def basis(self) -> str:
        """The figures the estimate rests on, in one sentence."""
        parts = [f"{self.probe_steps} timed steps at {self.s_per_step:.2f} s/step (after {WARMUP_STEPS} warm-up) "
                 f"x {self.steps} steps"]
        if self.evals:
            parts.append(f"{_count(self.evals, 'evaluation')} of {self.eval_records} records at {self.eval_s:.1f} s each")
        parts.append(f"{_count(self.saves, 'save')} at {self.save_s:.1f} s each (optimizer state not timed)")
        parts.append(f"model load and encoding {self.load_s:.0f} s")
        return f"measured on {self.device}: " + "; ".join(parts)

    def summary(self) -> str:
        return f"about {format_duration(self.total_s)} ({self.basis()})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def run_steps(cfg: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """Optimizer steps of the run: max_steps, or the epochs over `n_train` encoded records."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * world_size
    return max(1, math.ceil(cfg.num_train_epochs * math.ceil(n_train / per_step)))


def _timed_steps(trainer: Any) -> list[float]:
    """Train the trainer's max_steps and return each step's wall time."""
    from transformers import TrainerCallback

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs: Any) -> None:
            _sync()
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(StepTimer())
    trainer.train()
    return times


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def probe(cfg: TrainConfig, steps: int = 3, eval_batches: int = 2,
          progress: Callable[[str], None] = lambda _: None) -> Estimate:
    """Time `steps` optimizer steps (after a warm-up step), `eval_batches` evaluation batches
    and one save of `cfg`'s run on this process's device, and scale them to the run."""
    import torch

    from fabe.training.run import load_data
    from fabe.training.trainer import build_trainer

    if steps < 1:
        raise ValueError(f"steps: time at least 1 step, got {steps}")
    train, valid, _ = load_data(cfg)
    with tempfile.TemporaryDirectory(prefix="fabe-probe-") as tmp:
        # random batches: a length-grouped sampler serves its longest batches first
        probe_cfg = dataclasses.replace(cfg, out=tmp, max_steps=WARMUP_STEPS + steps, eval_steps=0,
                                        save_steps=10**9, logging_steps=10**9, report_to="none",
                                        group_by_length=False)
        progress("loading the model and encoding the data")
        t0 = time.perf_counter()
        built = build_trainer(probe_cfg, tmp, train, None)
        load_s = time.perf_counter() - t0
        n_train = len(built.trainer.train_dataset)
        progress(f"timing {WARMUP_STEPS} + {steps} steps")
        times = _timed_steps(built.trainer)[WARMUP_STEPS:]
        s_per_step = sum(times) / len(times)
        eval_s, eval_records = _timed_eval(built, cfg, valid, eval_batches, progress)
        progress("timing a save")
        t0 = time.perf_counter()
        built.trainer.save_model(str(Path(tmp) / "probe-save"))
        save_s = time.perf_counter() - t0
    total = run_steps(cfg, n_train)
    evals = total // cfg.eval_steps if eval_records and cfg.eval_steps > 0 else 0
    saves = total // cfg.save_steps + 1
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return Estimate(total_s=load_s + total * s_per_step + evals * eval_s + saves * save_s, steps=total,
                    s_per_step=s_per_step, probe_steps=len(times), evals=evals, eval_s=eval_s,
                    eval_records=eval_records, saves=saves, save_s=save_s, load_s=load_s, device=device)


def _timed_eval(built: Any, cfg: TrainConfig, valid: list | None, batches: int,
                progress: Callable[[str], None]) -> tuple[float, int]:
    """(seconds of one evaluation over the whole eval set, its size), from `batches` timed
    batches of it; (0, 0) without a valid split."""
    from fabe.training.encoding import EncodedDataset, encode_records

    if not valid or cfg.eval_steps <= 0:
        return 0.0, 0
    encoded = encode_records(valid, built.tokenizer, cfg.mode, cfg.max_length)[0]
    if not encoded:
        return 0.0, 0
    sample = EncodedDataset(encoded[:batches * cfg.batch_size])
    progress(f"timing {len(sample)} evaluation records")
    built.trainer.evaluate(EncodedDataset(encoded[:1]))  # warm-up
    _sync()
    t0 = time.perf_counter()
    built.trainer.evaluate(sample)
    _sync()
    return (time.perf_counter() - t0) * len(encoded) / len(sample), len(encoded)


def probe_in_child(cfg: TrainConfig, gpus: list[int], steps: int = 3,
                   on_line: Callable[[str], None] = lambda _: None, timeout: float = 3600) -> Estimate:
    """`probe` in a child process on the first of `gpus` (CPU when none), so its model and
    memory are gone when it returns; `on_line` gets each progress line. Raises ValueError
    with the child's last lines when it fails."""
    with tempfile.TemporaryDirectory(prefix="fabe-estimate-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(cfg.to_dict()))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpus[0]) if gpus else ""}
        proc = subprocess.Popen([sys.executable, "-m", "fabe", "estimate", "--config", str(config),
                                 "--probe_steps", str(steps), "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        tail: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        try:
            for line in proc.stderr:
                tail = (tail + [line.rstrip()])[-20:]
                if line.startswith("probe: "):
                    on_line(line[len("probe: "):].strip())
            out = proc.stdout.read()
            code = proc.wait()
        finally:
            timer.cancel()
        if code != 0:
            why = f"ran past {timeout:.0f} s" if code == -9 else "failed:\n" + "\n".join(tail[-8:])
            raise ValueError(f"estimate: the probe {why}")
    return Estimate(**json.loads(out.strip().splitlines()[-1]))  # the Trainer prints its logs there too
