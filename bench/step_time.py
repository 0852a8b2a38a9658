"""Full vs simple mode: time of one training step (forward, backward, AdamW) on the tiny
model with 3 candidates per record, full mode both with each prompt run once (shared, the
default) and with every candidate's prompt+candidate row (plain); measured alternately in
one run, median of repeats.

    python bench/step_time.py [--model embedded] [--batch 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fabe import embedded
from fabe.data.builder import BuildConfig, build_dataset
from fabe.data.dataset import Record
from fabe.training.config import TrainConfig
from fabe.training.encoding import Collator, encode_records
from fabe.training.modeling import load_causal_lm
from fabe.training.trainer import FabeTrainer, build_trainer


def three_candidates(records: list[Record]) -> list[Record]:
    out = []
    for r in records:
        ranked = r.ranked()
        keep = [ranked[0], ranked[1], ranked[-1]]
        out.append(Record(r.id, r.input, [c for c, _ in keep], [s for _, s in keep]))
    return out


def step_seconds(trainer: FabeTrainer, model, batch: dict, optimizer) -> float:
    start = time.perf_counter()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tempfile

    tmp = tempfile.mkdtemp()
    records = three_candidates(build_dataset(BuildConfig(out=tmp, n=200, seed=3))["train"])
    model, tok = load_causal_lm(embedded.resolve(args.model, "model"), dtype="float32")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    trainers, batches = {}, {}
    variants = {"simple": ("simple", False), "full": ("full", True), "full-plain": ("full", False)}
    for name, (mode, shared) in variants.items():
        cfg = TrainConfig(data="x", mode=mode, shared_prompt=shared)
        trainers[name] = build_trainer(cfg, tmp, records[:args.batch], model=model, tokenizer=tok).trainer
        trainers[name].current_gradient_accumulation_steps = 1
        encoded, _ = encode_records(records[:args.batch], tok, mode, 2048)
        batches[name] = Collator(tok.pad_token_id, mode, shared_prompt=shared)(encoded)
    times = {name: [] for name in variants}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name in variants:
            times[name].append(step_seconds(trainers[name], model, batches[name], optimizer))
    med = {m: statistics.median(t[1:]) for m, t in times.items()}
    enc, _ = encode_records(records[:args.batch], tok, "full", 2048)
    prompt = statistics.mean(len(e.prompt) for e in enc)
    target = statistics.mean(len(t) for e in enc for t in e.targets)
    ideal = (prompt + 3 * target) / (prompt + target)
    print(f"batch {args.batch}, 3 candidates, P={prompt:.0f} T={target:.0f} tokens")
    print(f"simple {med['simple']:.3f} s/step, full (shared prompt) {med['full']:.3f} s/step, "
          f"full (plain rows) {med['full-plain']:.3f} s/step")
    print(f"full/simple = {med['full'] / med['simple']:.2f} shared, {med['full-plain'] / med['simple']:.2f} plain  "
          f"(tokens: plain 3.00; shared (P+3T)/(P+T) = {ideal:.2f}, target <= 1.1 x that = {1.1 * ideal:.2f})")


if __name__ == "__main__":
    main()
