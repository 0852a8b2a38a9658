"""The planner's peak memory against the measured peak of a real training step on this CPU
(torch's memory profiler: every tensor, parameters, gradients, optimizer state,
activations and temporaries), for small Llama models in simple and full mode, gradient
checkpointing on and off, full fine-tuning in fp32 (what a CPU trains) and LoRA.

    python bench/planner_accuracy.py
"""

from __future__ import annotations

import json
import random
import tempfile


from fabe.training.config import TrainConfig
from fabe.training.encoding import Collator, Encoded, EncodedDataset
from fabe.training.planner import plan

SHAPES = [dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4),
          dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8)]
VOCAB = 8192
P = T = 256


def measured_peak_gib(model_dir: str, cfg: TrainConfig) -> float:
    """Peak bytes alive during the second optimizer step (the first makes Adam's state)."""
    from torch.profiler import ProfilerActivity, profile

    from transformers import LlamaForCausalLM

    from fabe.training.modeling import prepare_for_training
    from fabe.training.trainer import FabeTrainer, training_arguments

    model = prepare_for_training(LlamaForCausalLM.from_pretrained(model_dir), cfg.finetune == "lora",
                                 cfg.gradient_checkpointing, cfg.lora_r, lora_dropout=cfg.lora_dropout)
    model.train()
    rng = random.Random(0)
    c = 1 if cfg.mode == "simple" else 3
    samples = [Encoded([rng.randrange(3, VOCAB) for _ in range(P)],
                       [[rng.randrange(3, VOCAB) for _ in range(T)] for _ in range(c)], [-float(j) for j in range(c)],
                       0) for _ in range(cfg.batch_size)]
    collator = Collator(0, cfg.mode, packing=cfg.packing, capacity=cfg.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = FabeTrainer(model=model, args=training_arguments(cfg, tmp, False),
                              train_dataset=EncodedDataset(samples), data_collator=collator, fabe=cfg)
        trainer.create_optimizer_and_scheduler(num_training_steps=2)
        trainer.current_gradient_accumulation_steps = 1
        batch = collator(samples)

        def step() -> None:
            trainer.compute_loss(model, batch).backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        step()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            step()
        out = f"{tmp}/memory.json"
        prof.export_memory_timeline(out, device="cpu")
        with open(out) as f:
            _, sizes = json.load(f)
    return max(map(sum, sizes)) / 2**30


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    print(f"fp32 on CPU, batch 2, P = T = {P} tokens, 3 candidates in full mode, vocabulary {VOCAB}")
    print(f"{'model':>22} {'mode':>6} {'finetune':>8} {'ckpt':>5} {'planned MiB':>12} {'measured MiB':>13} {'error':>7}")
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, shape in enumerate(SHAPES):
            folder = f"{tmp}/m{i}"
            LlamaForCausalLM(LlamaConfig(**shape, num_key_value_heads=shape["num_attention_heads"],
                                         vocab_size=VOCAB, max_position_embeddings=2048)).save_pretrained(folder)
            for finetune in ("full", "lora"):
                for mode in ("simple", "full"):
                    for ckpt in (False, True):
                        cfg = TrainConfig(data="x", model=folder, mode=mode, finetune=finetune, precision="fp32",
                                          gradient_checkpointing=ckpt, batch_size=2, max_length=P + T,
                                          lora_dropout=0.0)
                        planned = plan(cfg, prompt_tokens=P, target_tokens=T).peak_gib
                        measured = measured_peak_gib(folder, cfg)
                        errors.append(planned / measured - 1)
                        name = f"h{shape['hidden_size']} x {shape['num_hidden_layers']} layers"
                        print(f"{name:>22} {mode:>6} {finetune:>8} {str(ckpt):>5} {planned * 1024:12.0f} "
                              f"{measured * 1024:13.0f} {errors[-1]:+7.1%}")
    print(f"planner vs measured peak: mean |error| {sum(map(abs, errors)) / len(errors):.1%}, "
          f"worst {max(errors, key=abs):+.1%} (target: within 15%)")


if __name__ == "__main__":
    main()
