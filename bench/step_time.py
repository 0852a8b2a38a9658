"""Full vs simple mode at real-scale settings, on DeepSeek-Coder-6.7B's shape scaled down
(width and vocabulary / 16, depth / 4: Llama, hidden 256, 8 layers, vocabulary 2,016, so the
output layer weighs what it does in the real model), LoRA r=8 and gradient checkpointing on,
3 candidates per record, samples of about P + T = max_length / 1.6 as the real data at 4,096:
step time (forward, backward, AdamW) of simple mode, full mode packed (each prompt once, the
default) and full mode plain (a row per prompt + candidate), measured alternately in one
run, median of repeats; processed/real tokens of both modes packed; and the peak memory of
the loss computation (chunked vs the full logits) at the real vocabulary, 32,256.

    python bench/step_time.py [--hidden 256] [--layers 8] [--prompt 384] [--target 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time

import torch

from fabe.training.encoding import Collator, Encoded
from fabe.training.losses import token_logprobs
from fabe.training.packing import chunked_token_logprobs, pack

VOCAB = 32256  # DeepSeek-Coder's


def samples(n: int, prompt: int, target: int, candidates: int, vocab: int, seed: int = 0) -> list[Encoded]:
    """Encoded samples of about `prompt` and `target` tokens (+-25%), like length-grouped data."""
    rng = random.Random(seed)

    def ids(mean: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(rng.randint(mean * 3 // 4, mean * 5 // 4))]

    return [Encoded(ids(prompt), [ids(target) for _ in range(candidates)], [float(-j) for j in range(candidates)], 0)
            for _ in range(n)]


def simple_of(s: Encoded) -> Encoded:
    return Encoded(s.prompt, [s.targets[s.best]], [s.quality[s.best]], 0)


def model_of(hidden: int, layers: int, vocab: int, attention: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    from fabe.training.modeling import prepare_for_training

    config = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 43 // 16, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, vocab_size=vocab,
                         max_position_embeddings=4096)
    from fabe.training.packing import register_block_attention

    register_block_attention()
    model = LlamaForCausalLM(config)
    model.set_attn_implementation(attention)
    model = prepare_for_training(model, True, True, lora_r=8, lora_dropout=0.0)
    model.train()
    return model


def step_seconds(trainer, model, batch: dict, optimizer) -> float:
    start = time.perf_counter()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start


def loss_peaks(hidden: torch.Tensor, head: torch.nn.Module, batch: dict) -> tuple[float, float]:
    """Peak MiB of the target log-probabilities and their backward: chunked from the hidden
    states, and through the full (rows x length x vocabulary) logits (torch's memory profiler)."""
    from torch.profiler import ProfilerActivity, profile

    def chunked() -> None:
        h = hidden.detach().requires_grad_()
        chunked_token_logprobs(head, h, batch["gather"], batch["score_labels"]).sum().backward()

    def full() -> None:
        h = hidden.detach().requires_grad_()
        flat = h.reshape(-1, h.size(-1))[batch["gather"]]  # (R, T, D) as the plain layout's target part
        logits = torch.cat([flat[:, :1], flat], 1) @ head.weight.T  # (R, 1 + T, V)
        token_logprobs(logits, batch["score_labels"]).sum().backward()

    peaks = []
    for fn in (chunked, full):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                         with_stack=True) as prof:
                fn()
            prof.export_memory_timeline(out.name, device="cpu")
            _, sizes = json.load(open(out.name))
        peaks.append(max(map(sum, sizes)) / 2**20)
    return peaks[0], peaks[1]


def packing_ratio(mode: str, args: argparse.Namespace, capacity: int) -> float:

    """Processed/real tokens of packed batches as training draws them: a length-grouped
    sampler (the default) over 800 samples of the bench's lengths."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    pool = samples(800, args.prompt, args.target, 3, args.vocab, seed=1)
    pool = pool if mode == "full" else [simple_of(s) for s in pool]
    order = list(LengthGroupedSampler(args.batch, lengths=[s.length for s in pool],
                                      generator=torch.Generator().manual_seed(0)))
    collate = Collator(0, mode, packing=True, capacity=capacity)
    processed = real = 0
    for start in range(0, len(order), args.batch):
        batch = [pool[i] for i in order[start:start + args.batch]]
        processed += collate(batch)["input_ids"].numel()
        real += sum(len(s.prompt) + sum(map(len, s.targets)) for s in batch)
    return processed / real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=VOCAB // 16)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--attention", default="fabe_blocks", help="fabe_blocks (the CPU default) or sdpa")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=384)
    parser.add_argument("--target", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from fabe.training.config import TrainConfig
    from fabe.training.encoding import EncodedDataset
    from fabe.training.trainer import ONE_ROW, FabeTrainer, training_arguments

    torch.manual_seed(0)
    model = model_of(args.hidden, args.layers, args.vocab, args.attention)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    full_samples = samples(args.batch, args.prompt, args.target, 3, args.vocab)
    simple_samples = [simple_of(s) for s in full_samples]
    capacity = args.max_length if args.attention == "sdpa" else ONE_ROW  # as `row_capacity` chooses
    variants = {"simple": ("simple", True, simple_samples), "full packed": ("full", True, full_samples),
                "full plain": ("full", False, full_samples)}
    trainers: dict[str, FabeTrainer] = {}
    batches = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (mode, packing, batch) in variants.items():
            cfg = TrainConfig(data="x", mode=mode, packing=packing, gradient_checkpointing=True)
            collator = Collator(0, mode, packing=packing, capacity=capacity)
            trainers[name] = FabeTrainer(model=model, args=training_arguments(cfg, tmp, False),
                                         train_dataset=EncodedDataset(batch), data_collator=collator, fabe=cfg)
            trainers[name].current_gradient_accumulation_steps = 1
            batches[name] = collator(batch)
        times = {name: [] for name in variants}
        for _ in range(args.repeats + 1):  # the first round warms up
            for name in variants:
                times[name].append(step_seconds(trainers[name], model, batches[name], optimizer))
    med = {m: statistics.median(t[1:]) for m, t in times.items()}
    prompt = statistics.mean(len(s.prompt) for s in full_samples)
    target = statistics.mean(len(t) for s in full_samples for t in s.targets)
    ideal = (prompt + 3 * target) / (prompt + target)
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers, vocabulary {args.vocab}, LoRA r=8, gradient "
          f"checkpointing, {args.attention} attention; batch {args.batch}, 3 candidates, P={prompt:.0f} T={target:.0f} "
          f"tokens")
    print(f"simple {med['simple']:.3f} s/step, full packed {med['full packed']:.3f} s/step, "
          f"full plain {med['full plain']:.3f} s/step")
    print(f"full/simple = {med['full packed'] / med['simple']:.2f} packed, {med['full plain'] / med['simple']:.2f} "
          f"plain  (target <= 1.1 x (P+3T)/(P+T) = {1.1 * ideal:.2f})")
    for mode in ("simple", "full"):
        print(f"{mode}: processed/real tokens {packing_ratio(mode, args, capacity):.3f} over 200 length-grouped "
              f"batches, {'one row per batch' if capacity == ONE_ROW else f'rows of at most {capacity}'} (target <= 1.02); under SDPA's dense mask (rows of "
              f"{args.max_length}): {packing_ratio(mode, args, args.max_length):.3f}")
    head = torch.nn.Linear(args.hidden, VOCAB, bias=False)
    real_vocab = samples(args.batch, args.prompt, args.target, 3, VOCAB)
    packed = pack(real_vocab, 0, capacity, True)
    hidden = torch.randn(*packed["input_ids"].shape, args.hidden)
    chunked, full = loss_peaks(hidden, head, packed)
    print(f"loss computation at vocabulary {VOCAB}, peak: chunked {chunked:.0f} MiB, full logits {full:.0f} MiB, ratio "
          f"{chunked / full:.2f} (target <= 0.25)")


if __name__ == "__main__":
    main()
