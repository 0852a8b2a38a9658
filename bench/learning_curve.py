"""Learning curve of a run: each checkpoint's top-candidate metrics (trigger removal, exact
restoration, parse rate, false changes) on held-out records, against minutes trained.

    python bench/learning_curve.py --run RUN --data FILE [--data FILE2] [--limit 200] [--k 4]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tqdm.auto import tqdm

from fabe.cleaning.cleaner import CleanConfig, Cleaner
from fabe.data.dataset import load_records
from fabe.evaluation.runner import evaluate
from fabe.rundir import RunDir


def minutes_at(run: RunDir) -> dict[int, float]:
    """Minutes of training at each logged step (from metrics.jsonl times)."""
    rows = [r for r in run.read_metrics() if r.get("loss") is not None]
    start = rows[0]["time"] - (rows[0].get("s_per_step") or 0) if rows else 0.0
    return {r["step"]: (r["time"] - start) / 60 for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--checkpoints", default="all", help="'all', 'last' or a comma list of steps")
    parser.add_argument("--out", help="Write the table as JSON here too.")
    parser.add_argument("--times", help="Run whose metrics.jsonl dates the steps (default --run).")
    args = parser.parse_args()
    run = RunDir(args.run)
    points = run.checkpoints()
    if args.checkpoints == "last":
        points = points[-1:]
    elif args.checkpoints != "all":
        wanted = {int(s) for s in args.checkpoints.split(",")}
        points = [p for p in points if int(p.name.split("-")[1]) in wanted]
    minutes = minutes_at(RunDir(args.times or args.run))
    table = []
    for point in points:
        step = int(point.name.split("-")[1])
        cleaner = Cleaner.load(point)
        for data in args.data:
            records = load_records(data)
            records = random.Random(0).sample(records, min(args.limit, len(records)))
            bar = tqdm(total=len(records), desc=f"{point.name} {Path(data).parent.name}")
            summary, _ = evaluate(cleaner, records, CleanConfig(k=args.k),
                                  progress=lambda done, total: bar.update(done - bar.n))
            bar.close()
            row = {"step": step, "minutes": round(minutes.get(step, float("nan")), 1),
                   "data": data, **summary["overall"]}
            table.append(row)
            print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
