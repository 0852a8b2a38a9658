"""Batched cleaning vs one input at a time: candidates per second with diverse beam search
(K=4), same inputs and settings, measured in one run.

    python bench/clean_batch.py [--model DIR] [--inputs 16] [--batch 8] [--max_new_tokens 64]
"""

from __future__ import annotations

import argparse
import time

from fabe import embedded
from fabe.cleaning.cleaner import CleanConfig, Cleaner
from fabe.data.generator import generate_functions
from fabe.data.triggers import insert_trigger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    args = parser.parse_args()
    cleaner = Cleaner.load(embedded.resolve(args.model, "model"))
    codes = [insert_trigger(f.code, "fixed", i).code
             for i, f in enumerate(generate_functions(args.inputs, seed=9))]
    cfg = CleanConfig(k=4, max_new_tokens=args.max_new_tokens)
    cleaner.clean(codes[0], cfg)  # warm up
    start = time.perf_counter()
    alone = [cleaner.clean(c, cfg) for c in codes]
    t_alone = time.perf_counter() - start
    start = time.perf_counter()
    together = cleaner.clean_batch(codes, cfg, batch_size=args.batch)
    t_batch = time.perf_counter() - start
    same = sum(a[0].code == b[0].code for a, b in zip(alone, together))
    n = args.inputs * cfg.k
    print(f"{args.inputs} inputs x K={cfg.k}, max_new_tokens {args.max_new_tokens}")
    print(f"one at a time: {n / t_alone:7.1f} candidates/s")
    print(f"batch {args.batch}:       {n / t_batch:7.1f} candidates/s  "
          f"(x{t_alone / t_batch:.2f}; top candidate identical for {same}/{args.inputs})")


if __name__ == "__main__":
    main()
