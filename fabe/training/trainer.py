"""The FABE trainer: a transformers `Trainer` whose loss is alpha * MLE (+ beta * ranking).

`simple` mode trains token cross-entropy on each record's best candidate; `full` mode adds
beta * a ranking loss (`fabe.training.losses`) over the length-normalized log-likelihoods of
all candidates. The loss components are logged as separate metrics (`mle_loss`,
`rank_loss`), averaged per logging interval. `build_trainer` makes one from a config and
records: what a run, a benchmark or a test trains with.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from fabe import embedded
from fabe.data.dataset import Record
from fabe.training.config import TrainConfig, deepspeed_config, uses_lora
from fabe.training.encoding import Collator, EncodedDataset, encode_records
from fabe.training.losses import rank_loss_fn, sequence_scores, token_logprobs
from fabe.training.packing import BLOCKS, register_block_attention

SPARSE_ATTENTION = (BLOCKS, "flex_attention")  # kernels that skip the blocks a packed row never attends
ONE_ROW = 1 << 40  # a row capacity no batch reaches

logger = logging.getLogger(__name__)

DISK_FULL_BYTES = 1 << 20  # a save failing with less than this free is a full disk


def packed_token_logprobs(model, head: torch.nn.Module, inputs: dict[str, torch.Tensor],
                          labels: torch.Tensor) -> torch.Tensor:
    """(R, T) log p of every candidate's target tokens from one forward over the packed rows
    (`fabe.training.packing`): the output layer runs on the last position only inside the
    model, and on the target tokens in chunks here."""
    from fabe.training.packing import attention_mask, chunked_token_logprobs

    blocks = getattr(model.config, "_attn_implementation", "") == BLOCKS
    extra = {"fabe_spans": inputs["spans"]} if blocks else {}
    # the block attention reads the spans; a 4D placeholder keeps transformers from building a dense mask
    mask = (inputs["segments"].new_ones((1, 1, 1, 1), dtype=torch.bool) if blocks
            else attention_mask(model, inputs["segments"], inputs["roles"], head.weight.dtype))
    out = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], attention_mask=mask,
                output_hidden_states=True, logits_to_keep=1, use_cache=False, **extra)
    return chunked_token_logprobs(head, out.hidden_states[-1], inputs["gather"], labels)


def count_tokens(inputs: dict[str, torch.Tensor]) -> int:
    """Non-padding tokens a training forward reads (the throughput's unit): every row's tokens,
    or packed, each prompt once plus its candidates."""
    if "segments" in inputs:
        return int(inputs["segments"].ge(0).sum())
    return int(inputs["attention_mask"].sum())


class FabeTrainer(Trainer):
    """Trainer whose loss is alpha * MLE (+ beta * ranking in full mode)."""

    def __init__(self, *args: Any, fabe: TrainConfig, lengths: list[int] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fabe = fabe
        self.rank_fn = rank_loss_fn(fabe.rank_loss, margin=fabe.margin)
        self.train_lengths = lengths
        self.tokens_seen = 0  # non-padding tokens of the training rows this process has run
        self._components: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list), "eval": defaultdict(list)}

    def _get_train_sampler(self, train_dataset=None):
        if not self.fabe.group_by_length or self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=self.train_lengths)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        full = self.fabe.mode == "full"
        labels = inputs["score_labels"] if full else inputs["labels"]
        if "segments" in inputs:
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            outputs = None
            token_lp = packed_token_logprobs(model, head, inputs, labels)  # (R, T)
        else:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            token_lp = token_logprobs(outputs.logits, labels)  # (R, T-1)
        mle_mask = inputs["labels"][:, 1:].ne(-100)
        nll = -(token_lp * mle_mask).sum()
        n_tokens = mle_mask.sum().clamp(min=1)
        scaled = num_items_in_batch is not None and model.training
        # With num_items_in_batch, the MLE is normalized over the whole accumulated batch
        # (the gradient-accumulation fix); Trainer then does not divide by the steps again.
        mle = nll / num_items_in_batch if scaled else nll / n_tokens
        if scaled and self.args.average_tokens_across_devices and self.args.world_size > 1:
            mle = mle * self.args.world_size
        loss = self.fabe.alpha * mle
        split = "train" if model.training else "eval"
        if model.training:
            self.tokens_seen += count_tokens(inputs)
        self._components[split]["mle_loss"].append((nll / n_tokens).detach())
        if full:
            seq = sequence_scores(token_lp, labels)  # (R,)
            index = inputs["cand_index"]  # (B, C)
            scores = seq[index.clamp(min=0)]  # (B, C)
            per_sample = self.rank_fn(scores, inputs["quality"], index.ge(0))  # (B,)
            rank = per_sample.mean()
            if scaled:
                rank = rank / self.current_gradient_accumulation_steps
            loss = loss + self.fabe.beta * rank
            self._components[split]["rank_loss"].append(per_sample.mean().detach())
        self.loss_is_scaled_for_ga = scaled
        return (loss, outputs) if return_outputs else loss

    def _save_checkpoint(self, model, trial) -> None:
        """A save that fails leaves no half-written checkpoint-N behind (on a full disk, it
        would hold the space status.json needs to record the failure). torch.save reports a
        full disk without naming it, so a failure with the disk full is said to be one."""
        try:
            super()._save_checkpoint(model, trial)
        except Exception as e:
            import errno
            import shutil

            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            full = shutil.disk_usage(folder.parent).free < DISK_FULL_BYTES
            if self.is_world_process_zero():
                shutil.rmtree(folder, ignore_errors=True)
            if full and not (isinstance(e, OSError) and e.errno == errno.ENOSPC):
                raise OSError(errno.ENOSPC, f"No space left on device while saving {folder.name}, "
                                            f"which was removed ({type(e).__name__}: {e})") from e
            raise

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        split = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if split == "eval" else ""
        for name, values in self._components[split].items():
            if values:
                logs[prefix + name] = round(torch.stack(values).mean().item(), 4)
        self._components[split].clear()
        if split == "train":  # all processes run batches of the same shape: rank 0's count x world size
            logs["tokens_seen"] = self.tokens_seen * self.args.world_size
        super().log(logs, *args, **kwargs)


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 where the GPU has it, fp16 on other GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def training_arguments(cfg: TrainConfig, output_dir: str | Path, has_eval: bool) -> TrainingArguments:
    """The Trainer's arguments for `cfg` (eval only where there is a valid split)."""
    import os

    precision = resolve_precision(cfg.precision)
    evaluate = has_eval and cfg.eval_steps > 0
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy="steps" if evaluate else "no", eval_steps=cfg.eval_steps if evaluate else None,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        bf16=precision == "bf16", fp16=precision == "fp16", seed=cfg.seed,
        report_to=[r for r in cfg.report_to.split(",") if r and r != "none"] or "none",
        remove_unused_columns=False, disable_tqdm=not os.isatty(2), deepspeed=deepspeed_config(cfg.deepspeed),
        dataloader_pin_memory=torch.cuda.is_available())


def load_model_for_training(cfg: TrainConfig) -> tuple[Any, Any, bool]:
    """(model ready for training, tokenizer, whether LoRA is used)."""
    from fabe.training.modeling import load_causal_lm, prepare_for_training

    precision = resolve_precision(cfg.precision)
    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    model, tokenizer = load_causal_lm(embedded.resolve(cfg.model, "model"), dtype=dtype,
                                      device="cuda" if torch.cuda.is_available() else "cpu",
                                      trust_remote_code=cfg.trust_remote_code)
    attention = choose_attention(cfg.attention)
    if attention != model.config._attn_implementation:
        register_block_attention()
        model.set_attn_implementation(attention)
    logger.info("attention: %s", attention)
    n_params = sum(p.numel() for p in model.parameters())
    lora = uses_lora(cfg.finetune, n_params)
    if not lora and dtype != "float32":
        model = model.float()  # full fine-tuning keeps fp32 master weights; AMP does the rest
    model = prepare_for_training(model, lora, cfg.gradient_checkpointing, cfg.lora_r,
                                 cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    tokenizer.padding_side = "right"
    return model, tokenizer, lora


def choose_attention(requested: str) -> str:
    """The attention kernel: `auto` is flex attention on a CUDA GPU where torch has it (block
    masks skip what packed rows never attend to), else the block attention of
    `fabe.training.packing` (one SDPA call per prompt and per candidate)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        try:
            import triton  # noqa: F401  (flex attention compiles through it)
            from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
        except ImportError:
            return BLOCKS
        return "flex_attention"
    return BLOCKS


def row_capacity(cfg: TrainConfig, model: Any) -> int:
    """Tokens per packed row: max length under dense attention (SDPA or eager with the 4D
    mask: a row costs its length squared, so rows stay as long as one sample may be); the
    block attention and flex attention skip what a token may not see, so a whole batch goes
    in one row, with no padding."""
    sparse = getattr(model.config, "_attn_implementation", "") in SPARSE_ATTENTION
    return ONE_ROW if sparse else cfg.max_length


@dataclass
class Built:
    """What `build_trainer` made."""

    trainer: FabeTrainer
    tokenizer: Any
    lora: bool
    counts: dict[str, int]  # training samples whose targets were cut / that were dropped


def build_trainer(cfg: TrainConfig, output_dir: str | Path, train: Sequence[Record],
                  valid: Sequence[Record] | None = None, callbacks: Sequence[TrainerCallback] = (),
                  model: Any = None, tokenizer: Any = None) -> Built:
    """A FabeTrainer for `cfg` on `train` (evaluating on `valid`), its model loaded from
    `cfg.model` unless `model` and `tokenizer` are given (then used as they are)."""
    lora = False
    if model is None:
        model, tokenizer, lora = load_model_for_training(cfg)
    encoded, counts = encode_records(train, tokenizer, cfg.mode, cfg.max_length)
    if not encoded:
        raise ValueError(f"data: no training record fits max_length {cfg.max_length}")
    train_set = EncodedDataset(encoded)
    valid_set = EncodedDataset(encode_records(valid, tokenizer, cfg.mode, cfg.max_length)[0]) if valid else None
    collator = Collator(tokenizer.pad_token_id, cfg.mode, 8 if torch.cuda.is_available() else None,
                        packing=cfg.packing, capacity=row_capacity(cfg, model))
    trainer = FabeTrainer(model=model, args=training_arguments(cfg, output_dir, valid_set is not None),
                          train_dataset=train_set, eval_dataset=valid_set, processing_class=tokenizer,
                          data_collator=collator, callbacks=list(callbacks), fabe=cfg, lengths=train_set.lengths)
    return Built(trainer, tokenizer, lora, counts)
