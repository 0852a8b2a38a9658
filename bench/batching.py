"""Processed vs real tokens: dynamic padding with length grouping (what training does) against
padding every batch to max_length, on a built dataset.

    python bench/batching.py --data DIR_OR_FILE [--tokenizer MODEL] [--mode full] [--batch 8]
"""

from __future__ import annotations

import argparse

from torch.utils.data import RandomSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from fabe import embedded
from fabe.data.dataset import find_split_files, load_records
from fabe.training.encoding import encode_records
from fabe.training.modeling import load_tokenizer


def padded_tokens(lengths: list[list[int]], order: list[int], batch: int, width: int | None) -> int:
    """Tokens a run processes when batches of `batch` samples are padded to their longest
    row (width None) or to `width`."""
    total = 0
    for start in range(0, len(order), batch):
        rows = [n for i in order[start:start + batch] for n in lengths[i]]
        total += len(rows) * (width or max(rows))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", default="embedded")
    parser.add_argument("--mode", default="full", choices=["simple", "full"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=4096)
    args = parser.parse_args()
    from pathlib import Path

    path = Path(args.data)
    records = load_records(find_split_files(path)["train"] if path.is_dir() else path)
    tok = load_tokenizer(embedded.resolve(args.tokenizer, "model"))
    encoded, _ = encode_records(records, tok, args.mode, args.max_length)
    rows = [[len(e.prompt) + len(t) for t in e.targets] for e in encoded]
    real = sum(sum(r) for r in rows)
    random_order = list(RandomSampler(range(len(rows))))
    grouped = list(LengthGroupedSampler(args.batch, lengths=[sum(r) for r in rows]))
    figures = {
        "pad to max_length": padded_tokens(rows, random_order, args.batch, args.max_length),
        "dynamic, random order": padded_tokens(rows, random_order, args.batch, None),
        "dynamic, grouped by length": padded_tokens(rows, grouped, args.batch, None),
    }
    print(f"{len(rows)} records, mode {args.mode}, batch {args.batch}, {real:,} real tokens")
    for name, processed in figures.items():
        print(f"{name:<28} processed/real = {processed / real:6.2f}  ({processed:,} tokens)")


if __name__ == "__main__":
    main()
