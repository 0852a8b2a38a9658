"""GPU smoke run of the real target's settings, with nothing to download: a randomly
initialized model of DeepSeek-Coder-1.3B's published shape, LoRA r=8, bf16, gradient
checkpointing, max length 4,096, batch 4, a few steps of simple and of full mode (3
candidates, packed); prints s/step, tokens/s and peak memory beside the planner's estimate.

    python bench/gpu_smoke.py [--steps 4] [--model deepseek-ai/deepseek-coder-1.3b-instruct]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

from fabe.training.config import TrainConfig, preset_values
from fabe.training.encoding import Collator, Encoded, EncodedDataset
from fabe.training.planner import KNOWN_SHAPES, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="deepseek-ai/deepseek-coder-1.3b-instruct", choices=sorted(KNOWN_SHAPES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--gpu", default="H100", help="GPU name for the planner's s/step (A100, H100, ...)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_smoke: no CUDA device here")
    from transformers import LlamaConfig, LlamaForCausalLM

    from fabe.training.modeling import prepare_for_training
    from fabe.training.trainer import FabeTrainer, choose_attention, training_arguments

    shape = KNOWN_SHAPES[args.model]
    rng = random.Random(0)
    vocab = shape["vocab_size"]

    def ids(n: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(n)]

    base = {**preset_values("deepseek-1.3b"), "model": args.model, "data": "x", "precision": "bf16",
            "max_length": 4096, "batch_size": 4, "gradient_accumulation_steps": 1}
    print(f"{torch.cuda.get_device_name(0)}; {args.model} shape, random weights, LoRA r=8, bf16, gradient "
          f"checkpointing, max length 4096, batch 4, P = T = 2048")
    for mode in ("simple", "full"):
        cfg = TrainConfig(**{**base, "mode": mode})
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=4096)).to("cuda", torch.bfloat16)
        model.set_attn_implementation(choose_attention("auto"))
        model = prepare_for_training(model, True, True, lora_r=8, lora_dropout=0.1)
        c = 1 if mode == "simple" else 3
        samples = [Encoded(ids(2048), [ids(2048) for _ in range(c)], [float(-j) for j in range(c)], 0)
                   for _ in range(4 * (args.steps + 1))]
        collator = Collator(0, mode, 8, packing=True, capacity=cfg.max_length)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = FabeTrainer(model=model, args=training_arguments(cfg, tmp, False),
                                  train_dataset=EncodedDataset(samples), data_collator=collator, fabe=cfg)
            trainer.create_optimizer_and_scheduler(num_training_steps=args.steps + 1)
            trainer.current_gradient_accumulation_steps = 1
            times, tokens = [], 0
            for step in range(args.steps + 1):
                batch = {k: v.cuda() if torch.is_tensor(v) else v
                         for k, v in collator(samples[4 * step:4 * step + 4]).items()}
                torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = trainer.compute_loss(model, batch)
                loss.backward()
                trainer.optimizer.step()
                trainer.optimizer.zero_grad()
                torch.cuda.synchronize()
                if step:  # the first step warms up
                    times.append(time.perf_counter() - start)
                    tokens += int(batch["segments"].ge(0).sum())
        s_step = sum(times) / len(times)
        estimate = plan(cfg, mode, args.gpu, prompt_tokens=2048, target_tokens=2048)
        print(f"{mode}: {s_step:.2f} s/step, {tokens / sum(times):,.0f} tokens/s, peak "
              f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB; planner: peak {estimate.peak_gib:.1f} GiB, "
              f"{estimate.s_per_step:.2f} s/step on {args.gpu} at 40% utilization")
        del model, trainer
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
