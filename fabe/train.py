"""FABE training: the config, the Trainer subclass with the MLE + ranking loss, and the run.

`simple` mode trains token cross-entropy on each record's best candidate; `full` mode adds
beta * a ranking loss (ListMLE or Tuna's margin loss) over the length-normalized
log-likelihoods of all candidates (DESIGN.md). A run writes its run directory
(`fabe.rundir`): config with provenance, status, metrics, log, checkpoints and `final/`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from fabe.dataset import Record, find_split_files, load_records
from fabe.encoding import MODES, Collator, EncodedDataset, encode_records
from fabe.losses import RANK_LOSSES, rank_loss_fn, sequence_scores, token_logprobs
from fabe.rundir import RunDir, now, provenance, write_json_atomic

logger = logging.getLogger(__name__)

FINETUNE = ("auto", "full", "lora")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LORA_ABOVE_PARAMS = 100_000_000  # finetune=auto: LoRA for models larger than this
DISK_FULL_BYTES = 1 << 20  # a save failing with less than this free is a full disk


@dataclass
class TrainConfig:
    """Everything a run needs; filled from a preset, a YAML/JSON file and flags, in that order."""

    data: str = field(default="", metadata={
        "help": "Dataset folder (its train and valid files are used), a single .jsonl/.json file, "
                "or 'embedded' (a generated dataset built on first use)."})
    model: str = field(default="embedded", metadata={
        "help": "Base model: 'embedded' (the tiny local Llama), a local folder or a hub id."})
    out: str = field(default="", metadata={"help": "Run directory (default runs/<time>-<mode>)."})
    preset: str = field(default="", metadata={"help": "Preset whose values come first.",
                                              "choices": ["", "tiny-cpu", "deepseek-1.3b", "deepseek-6.7b"]})
    mode: str = field(default="full", metadata={"help": "simple: MLE only; full: MLE + ranking.",
                                                "choices": list(MODES)})
    alpha: float = field(default=1.0, metadata={"help": "Weight of the MLE loss."})
    beta: float = field(default=0.3, metadata={
        "help": "Weight of the ranking loss (full mode; simple mode refuses any other value than 0.3 or 0)."})
    rank_loss: str = field(default="listmle", metadata={"help": "Ranking loss.",
                                                        "choices": list(RANK_LOSSES)})
    margin: float = field(default=0.1, metadata={"help": "Margin m of the margin ranking loss."})
    finetune: str = field(default="auto", metadata={
        "help": "full, lora, or auto (LoRA above 100M parameters).", "choices": list(FINETUNE)})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_targets: str = field(default="auto", metadata={
        "help": "LoRA target modules: auto (by model family) or a comma list."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs (unless max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 = use epochs."})
    batch_size: int = field(default=8, metadata={"help": "Records per device per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per step."})
    max_length: int = field(default=1024, metadata={
        "help": "Longest prompt+target in tokens; longer targets are cut (prompt kept whole)."})
    group_by_length: bool = field(default=True, metadata={"help": "Batch records of similar length."})
    logging_steps: int = field(default=10, metadata={"help": "Log metrics every N steps."})
    eval_steps: int = field(default=200, metadata={"help": "Evaluate every N steps (0 = never)."})
    save_steps: int = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int = field(default=3, metadata={"help": "Checkpoints kept."})
    eval_limit: int = field(default=0, metadata={"help": "Evaluate on at most N valid records (0 = all)."})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16.", "choices": list(PRECISIONS)})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    deepspeed: str = field(default="", metadata={
        "help": "DeepSpeed ZeRO for multi-GPU runs: zero2, zero3 or a DeepSpeed JSON file (needs the "
                "deepspeed package); empty: plain DDP."})
    shared_prompt: bool = field(default=True, metadata={
        "help": "Full mode: run each prompt once and score its candidates on its KV cache (not with "
                "gradient checkpointing, which turns the cache off)."})
    seed: int = field(default=0, metadata={"help": "Seed for data order and initialization."})
    report_to: str = field(default="none", metadata={"help": "none, tensorboard, wandb, ... (comma list)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the model repo's own code."})

    def __post_init__(self) -> None:
        rank_loss_fn(self.rank_loss)
        checks = {
            "mode": self.mode in MODES, "finetune": self.finetune in FINETUNE,
            "precision": self.precision in PRECISIONS, "learning_rate": self.learning_rate > 0,
            "alpha": self.alpha >= 0, "beta": self.beta >= 0, "batch_size": self.batch_size >= 1,
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1,
            "max_length": self.max_length >= 16, "lora_r": self.lora_r >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1, "warmup_steps": self.warmup_steps >= 0,
            "logging_steps": self.logging_steps >= 1, "save_steps": self.save_steps >= 1,
            "eval_steps": self.eval_steps >= 0, "num_train_epochs": self.num_train_epochs > 0,
            "max_steps": self.max_steps == -1 or self.max_steps >= 1,
        }
        for name in ("learning_rate", "alpha", "beta", "margin", "weight_decay", "num_train_epochs"):
            checks[name] = checks.get(name, True) and math.isfinite(getattr(self, name))
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(f"{name}: invalid value {getattr(self, name)!r}" for name in bad))
        if self.alpha == 0 and (self.mode == "simple" or self.beta == 0):
            raise ValueError("alpha, beta: the loss would be zero")
        if self.mode == "simple" and self.beta not in (0, BETA_DEFAULT):
            raise ValueError(f"beta: {self.beta} would be ignored: simple mode trains the MLE loss only; "
                             "use mode full for the ranking loss, or leave beta unset")
        if self.deepspeed and self.deepspeed not in ZERO_STAGES and not self.deepspeed.endswith(".json"):
            raise ValueError(f"deepspeed: {self.deepspeed!r} is neither zero2, zero3 nor a .json config file")


ZERO_STAGES = {"zero2": 2, "zero3": 3}
BETA_DEFAULT = TrainConfig.__dataclass_fields__["beta"].default


def deepspeed_config(spec: str) -> dict | str | None:
    """The DeepSpeed config Trainer gets: a ZeRO stage's dict ('auto' values are filled in by
    Trainer from its own arguments), a user's JSON file as given, or None."""
    if not spec:
        return None
    if spec not in ZERO_STAGES:
        return spec
    zero: dict[str, Any] = {"stage": ZERO_STAGES[spec], "overlap_comm": True, "contiguous_gradients": True}
    if spec == "zero3":
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # a loadable final/ on rank 0
    return {"zero_optimization": zero, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}


PRESETS: dict[str, dict[str, Any]] = {
    "tiny-cpu": dict(data="embedded", model="embedded", finetune="full", learning_rate=1e-3, warmup_steps=50,
                     batch_size=8, gradient_accumulation_steps=1, max_length=1024,
                     precision="fp32", gradient_checkpointing=False, eval_limit=100),
    "deepseek-1.3b": dict(model="deepseek-ai/deepseek-coder-1.3b-instruct", finetune="lora",
                          lora_r=8, lora_alpha=16, lora_dropout=0.1, learning_rate=2e-5,
                          warmup_steps=200, batch_size=4, gradient_accumulation_steps=4,
                          max_length=4096, precision="auto", gradient_checkpointing=True,
                          logging_steps=10, eval_steps=500, save_steps=500, save_total_limit=3),
}
PRESETS["deepseek-6.7b"] = {**PRESETS["deepseek-1.3b"],
                            "model": "deepseek-ai/deepseek-coder-6.7b-instruct"}


def config_to_argv(cfg: TrainConfig) -> list[str]:
    """Flags that rebuild `cfg` from the defaults: what `train` is launched with."""
    from dataclasses import fields

    argv: list[str] = []
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name == "out" or value == f.default:
            continue
        argv += [f"--{f.name}", str(value)]
    return argv


def shared_prompt_forward(model, inputs: dict[str, torch.Tensor]):
    """Logits of every candidate with its sample's prompt run once: the prompts' KV cache is
    repeated for each candidate (index_select, so gradients reach the prompt through every
    candidate) and the candidates are run on top of it. Returns an object with `logits`
    (R, 1 + T, V): the prompt's last position, then each candidate position, which is the
    target part of the plain layout's logits."""
    from types import SimpleNamespace

    from transformers import DynamicCache

    mask = inputs["prompt_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    # Only the prompt's last position is scored (it predicts the first target token), so the
    # output layer runs on that position alone.
    out = model(input_ids=inputs["prompt_ids"], attention_mask=mask, position_ids=positions,
                cache=cache, use_cache=True, logits_to_keep=1)
    owner = inputs["owner"]
    cache = out.past_key_values
    cache.reorder_cache(owner)
    cand_mask = inputs["cand_mask"]
    start = mask.sum(-1)[owner][:, None]  # each prompt's length
    cand = model(input_ids=inputs["cand_ids"], attention_mask=torch.cat([mask[owner], cand_mask], 1),
                 position_ids=start + torch.arange(cand_mask.size(1), device=mask.device),
                 cache=cache, use_cache=True)
    return SimpleNamespace(logits=torch.cat([out.logits[owner], cand.logits], 1))


class FabeTrainer(Trainer):
    """Trainer whose loss is alpha * MLE (+ beta * ranking in full mode)."""

    def __init__(self, *args: Any, fabe: TrainConfig, lengths: list[int] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fabe = fabe
        self.rank_fn = rank_loss_fn(fabe.rank_loss, fabe.margin)
        self.train_lengths = lengths
        self._components: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list), "eval": defaultdict(list)}

    def _get_train_sampler(self, train_dataset=None):
        if not self.fabe.group_by_length or self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=self.train_lengths)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        full = self.fabe.mode == "full"
        if "prompt_ids" in inputs:
            outputs = shared_prompt_forward(model, inputs)
        else:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        labels = inputs["score_labels"] if full else inputs["labels"]
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
        super().log(logs, *args, **kwargs)


# ---------------------------------------------------------------- config parsing

def read_config_file(path: str) -> dict[str, Any]:
    """Values of a YAML or JSON config file; unknown keys and syntax errors are ValueErrors
    that name the file (and the line)."""
    import difflib
    import json

    import yaml

    text = Path(path).read_text()
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text) or {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option names to values")
    names = list(TrainConfig.__dataclass_fields__)
    lines = config_key_lines(path, text)
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"{path}:{lines[key]}" if key in lines else path
            raise ValueError(f"{where}: unknown field {key!r}{hint}")
    return values


def config_key_lines(path: str, text: str) -> dict[str, int]:
    """The line of each top-level key of a (valid) YAML or JSON config file, for messages."""
    import yaml

    if path.endswith(".json"):
        found = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            for key in re.findall(r'"((?:[^"\\]|\\.)*)"\s*:', line):
                found.setdefault(key, lineno)
        return found
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _locate_problems(error: ValueError, path: str, argv: list[str]) -> ValueError:
    """`error` (from TrainConfig) with each problem of a value that came from the config file
    prefixed by FILE:LINE, so the user knows where to fix it."""
    lines = config_key_lines(path, Path(path).read_text())
    flags = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    parts = []
    for part in str(error).split("; "):
        name = part.split(":")[0].split(",")[0].strip()
        from_file = name in lines and name not in flags
        parts.append(f"{path}:{lines[name]}: {part}" if from_file else part)
    return ValueError("; ".join(parts))


NEGATIVE = re.compile(r"-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?|-inf|-nan", re.IGNORECASE)


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--flag -1e-3` as `--flag=-1e-3`: argparse takes `-1e-3` for an option and would answer
    "expected one argument" instead of naming the bad value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NEGATIVE.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def parse_train_config(argv: list[str]) -> tuple[TrainConfig, bool]:
    """TrainConfig and whether `--resume` was asked. Values come from, later ones winning:
    the dataclass defaults, `--preset`, `--config FILE`, flags; with `--resume`, from the
    run's saved config.json, then flags."""
    import argparse

    from transformers import HfArgumentParser

    argv = _join_negative_values(argv)
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--config", "--preset", "--out"):
        pre.add_argument(flag, default="")
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.resume:
        run = RunDir(known.out)
        if not known.out or not run.config_path.exists():
            raise ValueError(f"--resume: {known.out or '(no --out)'} is not a run directory with a config.json")
        base = run.read_config()["train"]
    else:
        file_values = read_config_file(known.config) if known.config else {}
        preset = known.preset or file_values.get("preset", "")
        if preset and preset not in PRESETS:
            raise ValueError(f"preset: unknown {preset!r}; choose among {list(PRESETS)}")
        base = {**PRESETS.get(preset, {}), **file_values, "preset": preset}
    parser = HfArgumentParser(TrainConfig, prog="python -m fabe train",
                              description="Train a FABE cleaner (simple or full mode).")
    parser.add_argument("--config", help="YAML or JSON file of options (flags override it).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the run in --out from its last checkpoint.")
    parser.set_defaults(**base)
    try:
        cfg = parser.parse_args_into_dataclasses(args=argv)[0]
    except ValueError as e:
        raise (_locate_problems(e, known.config, argv) if known.config and not known.resume else e) from None
    if known.resume and cfg.model != base.get("model", cfg.model):
        raise ValueError(f"model: the run in {known.out} was trained from {base['model']!r}; --resume cannot "
                         f"continue its checkpoints on {cfg.model!r}")
    return cfg, known.resume


# ---------------------------------------------------------------- the run

def _data_files(data: str) -> tuple[Path, Path | None]:
    """(train file, valid file or None) of a dataset folder or a single file ('embedded':
    the generated dataset, built on first use)."""
    from fabe.builder import resolve_data

    if not data:
        raise ValueError("data: give a dataset folder or file (--data)")
    path = Path(resolve_data(data))
    if path.is_dir():
        files = find_split_files(path)
        return files["train"], files["valid"]
    if not path.exists():
        raise ValueError(f"data: {data}: no such file or folder")
    return path, None


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16 where the GPU has it, fp16 on other GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _training_args(cfg: TrainConfig, run_path: Path, has_eval: bool) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision)
    evaluate = has_eval and cfg.eval_steps > 0
    return TrainingArguments(
        output_dir=str(run_path), per_device_train_batch_size=cfg.batch_size,
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
        dataloader_pin_memory=cuda)


def _load_model(cfg: TrainConfig) -> tuple[Any, Any, bool]:
    """(model ready for training, tokenizer, whether LoRA is used)."""
    from fabe.modeling import load_causal_lm, prepare_for_training, resolve_model

    precision = resolve_precision(cfg.precision)
    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    model, tokenizer = load_causal_lm(resolve_model(cfg.model), dtype=dtype,
                                      device="cuda" if torch.cuda.is_available() else "cpu",
                                      trust_remote_code=cfg.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    lora = cfg.finetune == "lora" or (cfg.finetune == "auto" and n_params > LORA_ABOVE_PARAMS)
    if not lora and dtype != "float32":
        model = model.float()  # full fine-tuning keeps fp32 master weights; AMP does the rest
    model = prepare_for_training(model, lora, cfg.gradient_checkpointing, cfg.lora_r,
                                 cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    tokenizer.padding_side = "right"
    return model, tokenizer, lora


def load_data(cfg: TrainConfig) -> tuple[list[Record], list[Record] | None, list[Path]]:
    """Validate and load the train (and valid) records; raises before anything is created."""
    train_file, valid_file = _data_files(cfg.data)
    train = load_records(train_file)
    valid = load_records(valid_file) if valid_file is not None else None
    if valid is not None and cfg.eval_limit:
        valid = valid[:cfg.eval_limit]
    return train, valid, [f for f in (train_file, valid_file) if f is not None]


def _encode(cfg: TrainConfig, tokenizer: Any, train: list[Record], valid: list[Record] | None,
            ) -> tuple[EncodedDataset, EncodedDataset | None, dict]:
    encoded, counts = encode_records(train, tokenizer, cfg.mode, cfg.max_length)
    if not encoded:
        raise ValueError(f"data: no training record fits max_length {cfg.max_length}")
    valid_set = None
    if valid is not None:
        valid_set = EncodedDataset(encode_records(valid, tokenizer, cfg.mode, cfg.max_length)[0])
    return EncodedDataset(encoded), valid_set, counts


def default_run_dir(mode: str, root: str = "runs") -> Path:
    import time

    return Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}"


def _stderr_is(path: Path) -> bool:
    """True when this process's stderr already goes to `path` (the run manager's launch)."""
    try:
        err, target = os.fstat(2), os.stat(path)
    except OSError:
        return False
    return (err.st_dev, err.st_ino) == (target.st_dev, target.st_ino)


NOISY_LOGGERS = ("transformers.configuration_utils", "transformers.generation.configuration_utils",
                 "transformers.modeling_utils", "transformers.tokenization_utils_base")


def _attach_log(run_path: Path) -> logging.Handler | None:
    """Copy the library's and transformers' log records into train.log, unless stderr is
    already that file (then they reach it once, through stderr)."""
    import transformers

    transformers.utils.logging.set_verbosity_info()
    if logging.getLogger("fabe").getEffectiveLevel() > logging.INFO:
        logging.getLogger("fabe").setLevel(logging.INFO)  # the progress lines
    for noisy in NOISY_LOGGERS:  # config and weight-loading dumps would bury the progress lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers prints through its own handler; with CI set it also propagates to the
    # root logger, which would print every line twice.
    logging.getLogger("transformers").propagate = False
    if _stderr_is(run_path / "train.log"):
        return None
    handler = logging.FileHandler(run_path / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("fabe", "transformers"):
        logging.getLogger(name).addHandler(handler)
    return handler


def _is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def _start_fields() -> dict[str, Any]:
    """Status fields of a starting run. Under the run manager the starter has recorded its
    pid (the torchrun agent's, for several GPUs), which must stay the run's pid."""
    fields: dict[str, Any] = dict(started_at=now(), ended_at=None, exit_code=None, error=None)
    if not os.environ.get("FABE_MANAGED"):
        import psutil

        fields.update(pid=os.getpid(), pid_created=psutil.Process().create_time())
    return fields


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run one training run into its run directory and return that directory. The data is
    validated first: a bad dataset raises before the run directory is created."""
    records = load_data(cfg)
    run = RunDir(cfg.out or default_run_dir(cfg.mode))
    if not resume and run.config_path.exists():
        raise FileExistsError(f"{run.path}: a run exists there; use --resume or another --out")
    preflight(cfg, records[0], records[2][0])
    if not _is_main_process():
        _train(cfg, run, records[0], records[1])
        return run.path
    run.path.mkdir(parents=True, exist_ok=True)
    config = run.read_config() if resume else {"provenance": provenance(records[2])}
    if resume:  # flags given with --resume (e.g. more steps) are recorded, and when
        config.setdefault("resumes", []).append({"at": now(), "train": asdict(cfg)})
    write_json_atomic(run.config_path, {**config, "train": asdict(cfg)})
    handler = _attach_log(run.path)
    try:
        run.set_status("running", **_start_fields())
        _train(cfg, run, records[0], records[1])
    except BaseException as e:
        from fabe.runs import failure_hint

        state = "stopped" if isinstance(e, KeyboardInterrupt) else "failed"
        error = f"{type(e).__name__}: {e}"[:2000]
        run.set_status(state, ended_at=now(), exit_code=1, error=error, hint=failure_hint(error))
        raise
    finally:
        if handler is not None:
            for name in ("fabe", "transformers"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()
    return run.path


def preflight(cfg: TrainConfig, train: list[Record], train_file: Path) -> None:
    """Refuse, before the run directory exists, a model that is not one (its tokenizer is
    loaded: quick, and what a bad folder fails on first) and a dataset of which no record
    fits max_length, so bad input leaves no failed run behind."""
    from fabe.encoding import min_tokens, prompt_ids
    from fabe.modeling import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(cfg.model), cfg.trust_remote_code)
    def fits(code: str) -> bool:  # the cheap bound first: a 5 MB input is never tokenized
        return min_tokens(tokenizer, code) < cfg.max_length and len(prompt_ids(tokenizer, code)) < cfg.max_length

    if not any(fits(r.input) for r in train):
        raise ValueError(f"data: {train_file}: no record fits max_length {cfg.max_length}: each input with the "
                         "prompt is longer; raise max_length (within the model's window) or shorten the inputs")


def _train(cfg: TrainConfig, run: RunDir, train: list[Record], valid: list[Record] | None) -> None:
    from fabe.callbacks import GracefulStop, RunMetricsCallback

    model, tokenizer, lora = _load_model(cfg)
    train_set, valid_set, counts = _encode(cfg, tokenizer, train, valid)
    main = _is_main_process()
    if main:
        run.set_status("running", finetune="lora" if lora else "full", cut_samples=counts["cut"],
                       dropped_samples=counts["dropped"])
    stop = GracefulStop()
    trainer = FabeTrainer(
        model=model, args=_training_args(cfg, run.path, valid_set is not None),
        train_dataset=train_set, eval_dataset=valid_set, processing_class=tokenizer,
        data_collator=Collator(tokenizer.pad_token_id, cfg.mode, 8 if torch.cuda.is_available() else None,
                               shared_prompt=cfg.shared_prompt and not cfg.gradient_checkpointing),
        callbacks=[RunMetricsCallback(run), stop], fabe=cfg, lengths=train_set.lengths)
    checkpoint = _resume_point(run, main)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        stop.restore()
    if not main:
        return
    if stop.requested:
        run.set_status("stopped", ended_at=now(), exit_code=0)
        return
    save_final(trainer, tokenizer, cfg, lora, run.final_path)
    run.set_status("finished", ended_at=now(), exit_code=0)


def _resume_point(run: RunDir, main: bool) -> str | None:
    """The last complete checkpoint (Trainer alone would take the highest-numbered folder, even
    one whose save a crash cut off); the main process deletes the unfinished ones."""
    complete = run.checkpoints()
    if main:
        import shutil

        for folder in set(run.checkpoints(complete=False)) - set(complete):
            logger.warning("deleting %s: its save never finished", folder)
            shutil.rmtree(folder, ignore_errors=True)
    if not complete:
        return None
    logger.info("resuming from %s", complete[-1])
    return str(complete[-1])


def save_final(trainer: Trainer, tokenizer: Any, cfg: TrainConfig, lora: bool, final: Path) -> None:
    """Adapter (or full model) + tokenizer + fabe.json, written aside and renamed into place."""
    import shutil

    from fabe.prompt import PROMPT_VERSION

    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    write_json_atomic(tmp / "fabe.json", {
        "base_model": cfg.model, "mode": cfg.mode, "finetune": "lora" if lora else "full",
        "prompt_version": PROMPT_VERSION, "rank_loss": cfg.rank_loss,
        "step": trainer.state.global_step})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
