"""What a run will need before it is launched or anything is downloaded: peak GPU memory by
part and tokens per step, from the model's config alone (a config.json, or the published
shapes of the presets' models), and an s/step for a named GPU from its peak FLOP/s at an
assumed utilization.

The memory model (bytes, per process, for one micro-batch of B samples of at most L tokens):
- weights: parameters x 2 (bf16/fp16) or 4 (fp32; a full fine-tune keeps fp32 weights), and
  LoRA's own in fp32;
- optimizer state: two Adam moments (8 bytes) and gradients (4) per trainable parameter;
- activations: per token and layer `layer_elements` values (attention and MLP intermediates,
  attention itself by a memory-efficient kernel: no L x L scores) x 2 or 4 bytes;
  with gradient checkpointing only each layer's input is kept, plus one layer's
  intermediates while it is recomputed;
- the packed batch's dense block mask, rows x L x L bytes, under SDPA or eager attention (the
  default kernels read the rows' spans or a flex BlockMask instead);
- the loss buffers: the scored tokens' logits in fp32 (and their gradient), for at most
  `CHUNK_TOKENS` tokens at a time (all of them without chunking);
- the peak: the larger of the loss moment (activations and loss buffers, no gradients yet)
  and the end of backward (gradients, the recomputed layer), over weights and state;
- the tokens: B x (P + T) in simple mode; in full mode B x (P + C T) packed, B x C x (P + T)
  plain; P = T = L / 2 unless the dataset's own mean lengths are given.
Bench: `bench/planner_accuracy.py` compares it with measured peaks.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabe import embedded
from fabe.training.config import TrainConfig, uses_lora
from fabe.training.packing import CHUNK_TOKENS

GIB = 2**30
# Published shapes (config.json of the hub repositories), so a plan needs no download.
KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    "deepseek-ai/deepseek-coder-1.3b-instruct": dict(
        hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
        num_key_value_heads=16, vocab_size=32256, tie_word_embeddings=False),
    "deepseek-ai/deepseek-coder-6.7b-instruct": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32256, tie_word_embeddings=False),
}
# Dense bf16 (fp16 for V100/T4) peak tensor FLOP/s, from the vendors' data sheets.
GPU_FLOPS: dict[str, float] = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "L40S": 362e12,
                               "A10": 125e12, "RTX4090": 165e12, "V100": 125e12, "T4": 65e12}
UTILIZATION = 0.4  # model FLOP utilization assumed for the s/step figure


@dataclass
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def params(self) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # attention, MLP, two norms
        return self.layers * per_layer + self.vocab * h * (1 if self.tied else 2) + h

    def lora_params(self, r: int) -> int:
        """LoRA on q, k, v, o (the default targets): r x (in + out) each."""
        h, kv = self.hidden, self.kv_dim
        return self.layers * r * (2 * (h + h) + 2 * (h + kv))

    def layer_elements(self, lora: bool, lora_dropout: bool) -> int:
        """Values kept per token by one layer for its backward: the two norms' inputs and
        outputs, q, k, v (and their rotated copies), the attention output, the MLP's gate, up,
        activation and product. Under LoRA the MLP is frozen and autograd keeps no input of a
        frozen linear layer for its weight gradient: the product (the down projection's input)
        is not kept; LoRA dropout keeps a copy of the input of each of its 4 targets."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return 6 * h + 4 * kv + (3 if lora else 4) * i + (4 * h if lora_dropout else 0)


def model_shape(model: str) -> Shape:
    """The shape of `model`: a known hub id, or a folder (or `embedded`) holding a config.json."""
    if model in KNOWN_SHAPES:
        values = KNOWN_SHAPES[model]
    else:
        path = Path(embedded.resolve(model, "model")) / "config.json"
        if not path.is_file():
            raise ValueError(f"model: {model}: no config.json there and not one of the known shapes "
                             f"{sorted(KNOWN_SHAPES)}; give a model folder")
        values = json.loads(path.read_text())
    try:
        return Shape(values["hidden_size"], values["intermediate_size"], values["num_hidden_layers"],
                     values["num_attention_heads"], values.get("num_key_value_heads") or values["num_attention_heads"],
                     values["vocab_size"], bool(values.get("tie_word_embeddings", False)))
    except KeyError as e:
        raise ValueError(f"model: {model}: its config has no {e.args[0]} (a Llama-shaped model is planned)") from None


@dataclass
class Plan:
    mode: str
    tokens_per_step: int  # per process, all micro-batches of one optimizer step
    micro_batch_tokens: int
    parts_gib: dict[str, float]  # peak memory by part
    peak_gib: float  # the larger of the loss and end-of-backward moments, not the parts' sum
    s_per_step: float | None  # on `gpu` at UTILIZATION
    gpu: str
    lora: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(cfg: TrainConfig, mode: str | None = None, gpu: str = "A100", candidates: int = 3,
         prompt_tokens: int | None = None, target_tokens: int | None = None) -> Plan:
    """The plan of `cfg`'s run in `mode` (default: its own) with `candidates` per record
    (full mode) and the given mean prompt and target lengths (default: half of max_length)."""
    mode = mode or cfg.mode
    shape = model_shape(cfg.model)
    n = shape.params()
    lora = uses_lora(cfg.finetune, n)
    half = cfg.precision in ("bf16", "fp16", "auto")
    act = 2 if half else 4
    p = prompt_tokens or cfg.max_length // 2
    t = target_tokens or cfg.max_length - p
    c = 1 if mode == "simple" else candidates
    per_sample = p + c * t if cfg.packing else c * (p + t)  # plain rows repeat the prompt
    tokens = cfg.batch_size * per_sample
    scored = cfg.batch_size * c * t
    row = max(cfg.max_length, p + c * t)
    rows = max(1, math.ceil(tokens / row))
    dense = cfg.attention in ("sdpa", "eager")  # the others skip the blocks no token sees
    trainable = shape.lora_params(cfg.lora_r) if lora else n
    # LoRA weights are fp32 (16 bytes with gradient and Adam moments); a full fine-tune's
    # weights are fp32 too: 4 + 4 (gradient) + 8 (moments)
    parts = {"weights": n * (2 if lora and half else 4) + (trainable * 4 if lora else 0),
             "optimizer state": trainable * 8, "gradients": trainable * 4}
    layer = tokens * shape.layer_elements(lora, lora and cfg.lora_dropout > 0) * act
    kept = shape.layers * tokens * shape.hidden * act if cfg.gradient_checkpointing else shape.layers * layer
    parts["activations kept"] = kept
    parts["layer recomputed"] = layer if cfg.gradient_checkpointing else 0
    parts["attention mask"] = rows * row * row if cfg.packing and dense else 0
    # chunked: fp32 logits, their softmax and gradient for one chunk; plain: the model's
    # logits of every row position, their fp32 copy and its log-softmax
    parts["loss buffers"] = (3 * min(scored, CHUNK_TOKENS) * shape.vocab * 4 if cfg.packing
                             else tokens * shape.vocab * (act + 8))
    # The peak is the larger of two moments: the loss (every activation kept, the loss
    # buffers, no gradient yet: they are freed after each step) and the end of backward (the
    # gradients, the layer being recomputed); the weights, optimizer state and mask throughout.
    always = parts["weights"] + parts["optimizer state"] + parts["attention mask"] + kept
    peak = always + max(parts["loss buffers"], parts["gradients"] + parts["layer recomputed"])
    # weights: forward 2N, backward 2N for the activations (+ 2N for the weights unless
    # LoRA freezes them), a recompute of the forward under checkpointing; attention: 4 h per
    # (query, key) pair in a layer, three times (forward and backward) plus the recompute
    passes = (4 if lora else 6) + (2 if cfg.gradient_checkpointing else 0)
    pairs = cfg.batch_size * (p * p / 2 + c * (t * p + t * t / 2) if cfg.packing else c * (p + t) ** 2 / 2)
    flops = passes * n * tokens + 4 * shape.layers * shape.hidden * pairs * (3 + cfg.gradient_checkpointing)
    steps_tokens = tokens * cfg.gradient_accumulation_steps
    s_per_step = flops * cfg.gradient_accumulation_steps / (GPU_FLOPS[gpu] * UTILIZATION) if gpu in GPU_FLOPS else None
    parts_gib = {k: v / GIB for k, v in parts.items()}
    return Plan(mode, steps_tokens, tokens, parts_gib, peak / GIB, s_per_step, gpu, lora)


def plan_table(plans: list[Plan]) -> str:
    """The plans side by side (one column per mode), for the CLI and the page."""
    import pandas as pd

    rows: dict[str, dict[str, str]] = {}
    for pl in plans:
        column = {f"{part} (GiB)": f"{gib:.2f}" for part, gib in pl.parts_gib.items()}
        column["peak (GiB)"] = f"{pl.peak_gib:.2f}"
        column["tokens per micro-batch"] = f"{pl.micro_batch_tokens:,}"
        column["tokens per step"] = f"{pl.tokens_per_step:,}"
        column[f"s/step on {pl.gpu} at {UTILIZATION:.0%} utilization"] = (
            "-" if pl.s_per_step is None else f"{pl.s_per_step:.1f}")
        rows[pl.mode] = column
    return pd.DataFrame(rows).to_string()


def memory_warning(plans: list[Plan], gpus: list[dict]) -> str:
    """A warning when a plan's peak exceeds the smallest chosen GPU's memory ('' if not)."""
    if not gpus:
        return ""
    smallest = min(gpus, key=lambda g: g["memory_total_mb"])
    total = smallest["memory_total_mb"] / 1024
    over = [pl for pl in plans if pl.peak_gib > total]
    return "; ".join(f"{pl.mode} mode needs about {pl.peak_gib:.1f} GiB, more than GPU {smallest['index']} "
                     f"({smallest['name']}) has ({total:.0f} GiB): lower the batch size or max length, or turn on "
                     "gradient checkpointing" for pl in over)
