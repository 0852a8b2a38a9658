"""How close the Train tab's duration estimate comes to the run it estimates: the timed probe
(`fabe.training.estimate.probe`) of a config, then that run trained for real in the same
process, both on this machine; prints the estimate, the run's wall time and their ratio,
with the probe's own cost beside them.

    python bench/estimate_accuracy.py [--model embedded] [--steps 60] [--mode full]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fabe.data.builder import BuildConfig, build_dataset
from fabe.training.config import TrainConfig
from fabe.training.estimate import format_duration, probe
from fabe.training.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--mode", default="full")
    parser.add_argument("--probe_steps", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    build_dataset(BuildConfig(out=str(tmp / "data"), n=400, seed=5))
    cfg = TrainConfig(data=str(tmp / "data"), model=args.model, mode=args.mode, max_steps=args.steps,
                      batch_size=4, eval_steps=args.steps // 3, save_steps=args.steps // 2, eval_limit=40,
                      logging_steps=10, out=str(tmp / "run"))
    t0 = time.perf_counter()
    est = probe(cfg, args.probe_steps)
    probe_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(cfg)
    actual = time.perf_counter() - t0
    print(f"{args.mode} mode, {args.steps} steps, batch 4, model {args.model}")
    print(f"estimate {format_duration(est.total_s)} ({est.basis()})")
    print(f"run {format_duration(actual)}; estimate / run = {est.total_s / actual:.2f}; "
          f"probe cost / run = {probe_s / actual:.2f}")


if __name__ == "__main__":
    main()
