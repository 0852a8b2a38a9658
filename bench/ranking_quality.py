"""Does full mode rank better? The same base model trained the same steps on the same data in
simple mode (MLE only) and in full mode (MLE + ranking loss), then each scored on the same
held-out records: pairwise accuracy of its candidate scores against the data's, Kendall
tau-b, and how often the best-scored candidate is ranked first (`fabe.evaluation.ranking`).

    python bench/ranking_quality.py [--data DIR] [--steps 150] [--limit 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fabe.cleaning.cleaner import Cleaner
from fabe.data.builder import BuildConfig, build_dataset
from fabe.data.dataset import load_records
from fabe.evaluation.ranking import candidate_scores, ranking_quality
from fabe.evaluation.report import ranking_line
from fabe.training.config import TrainConfig
from fabe.training.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="A dataset folder (default: 1,200 generated records)")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = Path(args.data) if args.data else tmp / "data"
    if not args.data:
        build_dataset(BuildConfig(out=str(data), n=1200, seed=11))
    held_out = [r for r in load_records(data / "test.jsonl") if len(set(r.score)) > 1][:args.limit]
    print(f"{len(held_out)} held-out records of {data}, {args.steps} steps from {args.model} in each mode")
    for mode in ("simple", "full"):
        run = train(TrainConfig(data=str(data), model=args.model, mode=mode, max_steps=args.steps, batch_size=8,
                                learning_rate=1e-3, warmup_steps=10, eval_steps=0, save_steps=10**6,
                                logging_steps=50, seed=3, out=str(tmp / mode)))
        cleaner = Cleaner.load(run / "final", device="cpu")
        quality = ranking_quality(held_out, candidate_scores(cleaner, held_out))
        print(f"{mode}: {ranking_line(quality)}")


if __name__ == "__main__":
    main()
