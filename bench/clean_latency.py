"""Seconds to clean one function of about N lines (the Clean tab's wait), K=4 diverse beam
beside greedy, one input at a time, measured in one run on the same inputs.

    python bench/clean_latency.py [--model embedded] [--data examples] [--lines 20] [--slack 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from fabe import embedded
from fabe.cleaning.cleaner import CleanConfig, Cleaner
from fabe.data.dataset import load_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default=embedded.EXAMPLES, help="A split, or 'examples' (the shipped real C).")
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--slack", type=int, default=3, help="Inputs of lines +- slack are timed.")
    parser.add_argument("--limit", type=int, default=12)
    args = parser.parse_args()
    cleaner = Cleaner.load(embedded.resolve(args.model, "cleaner"))
    records = [r for r in load_records(embedded.resolve_split(args.data, "test"))
               if abs(r.input.count("\n") - args.lines) <= args.slack][:args.limit]
    if not records:
        raise SystemExit(f"no input of {args.lines} +- {args.slack} lines in {args.data}")
    settings = {"K=4 diverse beam": CleanConfig(k=4), "greedy": CleanConfig(k=1, decoding="beam")}
    cleaner.clean(records[0].input, settings["greedy"])  # warm up
    seconds: dict[str, list[float]] = {}
    for name, cfg in settings.items():
        for r in records:
            start = time.perf_counter()
            cleaner.clean(r.input, cfg)
            seconds.setdefault(name, []).append(time.perf_counter() - start)
    lines = statistics.mean(r.input.count("\n") for r in records)
    print(f"{len(records)} inputs of {lines:.1f} lines on average ({args.data}), model {args.model}")
    for name, values in seconds.items():
        print(f"{name:18s} median {statistics.median(values):.2f} s  max {max(values):.2f} s")
    ratio = statistics.median(seconds["K=4 diverse beam"]) / statistics.median(seconds["greedy"])
    print(f"K=4 / greedy: {ratio:.2f}x")


if __name__ == "__main__":
    main()
