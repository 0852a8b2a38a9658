"""Cost of one live-chart refresh of a long run's metrics (a 100,000-line metrics.jsonl):
re-reading the whole file every poll vs following it incrementally, with the charts built
from thinned points either way.

    python bench/metrics_refresh.py [--lines 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fabe.rundir import MetricsFollower, RunDir
from pages.plots import loss_figure, lr_figure


def row(step: int, max_steps: int) -> dict:
    loss = 2.0 / (1 + step / 1000)
    return {"step": step, "max_steps": max_steps, "epoch": step / 5000, "loss": loss, "mle_loss": 0.8 * loss,
            "rank_loss": 0.2 * loss, "eval_loss": None, "learning_rate": 2e-5, "grad_norm": 1.0,
            "s_per_step": 2.1, "eta_s": 3600.0, "time": 1.8e9 + step}


def columns_of(rows: list[dict]) -> dict[str, list]:
    return {key: [r.get(key) for r in rows] for key in rows[0]}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        with run.metrics_path.open("w") as f:
            f.writelines(json.dumps(row(s, args.lines + 1000)) + "\n" for s in range(1, args.lines + 1))
        size_mb = run.metrics_path.stat().st_size / 2**20
        follower = MetricsFollower(run)
        first = timed(follower.poll)
        step = args.lines
        full, incremental, read_only, figures_only = [], [], [], []
        for _ in range(args.repeats):
            for _ in range(10):  # what a run appends between two polls
                step += 1
                run.append_metrics(row(step, args.lines + 1000))
            full.append(timed(lambda: (loss_figure(c := columns_of(run.read_metrics())), lr_figure(c))))
            read_only.append(timed(follower.poll))
            figures_only.append(timed(lambda: (loss_figure(follower.columns), lr_figure(follower.columns))))
            incremental.append(read_only[-1] + figures_only[-1])
        assert follower.length == step
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"metrics.jsonl: {args.lines:,} lines ({size_mb:.1f} MB), 10 lines appended per poll, "
          f"median of {args.repeats}")
    print(f"first read of the whole file (once per run per app): {first * 1000:.0f} ms")
    print(f"full re-read + charts:        {ms(full):8.1f} ms")
    print(f"incremental read + charts:    {ms(incremental):8.1f} ms "
          f"(read {ms(read_only):.2f} ms, charts {ms(figures_only):.1f} ms)")
    print(f"full / incremental:           {ms(full) / ms(incremental):8.1f} x")


if __name__ == "__main__":
    main()
