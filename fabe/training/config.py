"""The training config: options grouped by concern, the presets, and parsing.

Each option is documented once, in its field's metadata: `label` (what the Train form
shows), `help` (the CLI's and the form's help text), `choices` (a closed list, read from the
registry that implements them), `suggest` (an open list the form offers) and `when` (the
other options' values under which it applies; the form hides it otherwise). `TrainConfig`
holds all the groups as flat fields, so a YAML file, a flag and the form all say
`batch_size`. Values come from, later ones winning: the defaults, `--preset`, `--config
FILE`, flags. A run folder's `config.json` holds the resolved result, every field, and a
launched run trains from that file alone (`fabe.training.run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, SchedulerType

from fabe.training.encoding import MODES
from fabe.training.losses import RANK_LOSSES

FINETUNE = ("auto", "full", "lora")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = tuple(s.value for s in SchedulerType)
ZERO_STAGES = {"zero2": 2, "zero3": 3}
ATTENTION = ("auto", "fabe_blocks", "sdpa", "flex_attention", "eager")
LORA = {"finetune": ("auto", "lora")}  # when LoRA options apply
FULL_MODE = {"mode": ("full",)}
UI_KEYS = ("label", "suggest", "when")  # metadata the form reads and argparse does not take

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
PRESETS["deepseek-6.7b"] = {**PRESETS["deepseek-1.3b"], "model": "deepseek-ai/deepseek-coder-6.7b-instruct"}


LORA_ABOVE_PARAMS = 100_000_000  # finetune=auto: LoRA for models larger than this


def uses_lora(finetune: str, n_params: int) -> bool:
    """Whether a model of `n_params` parameters is fine-tuned with LoRA under `finetune`."""
    return finetune == "lora" or (finetune == "auto" and n_params > LORA_ABOVE_PARAMS)


def option(default: Any, label: str, help: str, **ui: Any) -> Any:
    """A config field with its documentation (see the module docstring for the keys)."""
    if "choices" in ui:
        ui["choices"] = list(ui["choices"])
    return field(default=default, metadata={"label": label, "help": help, **ui})


class ConfigError(ValueError):
    """Every problem of a config at once; `problems` lists them, each naming its field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _invalid(cfg: Any, checks: dict[str, bool]) -> list[str]:
    return [f"{name}: invalid value {getattr(cfg, name)!r}" for name, ok in checks.items() if not ok]


def _finite(cfg: Any, *names: str) -> dict[str, bool]:
    return {name: math.isfinite(getattr(cfg, name)) for name in names}


@dataclass
class RunOptions:
    """Where the run goes and which preset it started from."""

    preset: str = option("", "Preset", "Preset whose values come first (empty: none).",
                         choices=["", *PRESETS])
    out: str = option("", "Run folder", "Run directory (default runs/<time>-<mode>).")

    def problems(self) -> list[str]:
        return [] if self.preset in ("", *PRESETS) else \
            [f"preset: unknown {self.preset!r}; choose among {list(PRESETS)}"]


@dataclass
class DataOptions:
    """What is trained on and how it is cut and batched."""

    data: str = option("", "Dataset", "Dataset folder (its train and valid files are used), a single "
                       ".jsonl/.json file, or 'embedded' (5,000 generated records, built on first use).")
    max_length: int = option(1024, "Max length", "Longest prompt+target in tokens; longer targets are cut "
                             "(the prompt is kept whole).")
    group_by_length: bool = option(True, "Group by length", "Batch records of similar length (less padding).")
    eval_limit: int = option(0, "Eval records", "Evaluate on at most N valid records (0: all).")

    def problems(self) -> list[str]:
        return _invalid(self, {"max_length": self.max_length >= 16, "eval_limit": self.eval_limit >= 0})


@dataclass
class ModelOptions:
    """The base model and how it is fine-tuned."""

    model: str = option("embedded", "Model", "Base model: 'embedded' (the tiny local Llama), a local folder "
                        "or a hub id.")
    finetune: str = option("auto", "Fine-tuning", "full, lora, or auto (LoRA above 100M parameters).",
                           choices=FINETUNE)
    lora_r: int = option(8, "LoRA r", "LoRA rank.", when=LORA)
    lora_alpha: int = option(16, "LoRA alpha", "LoRA scaling numerator (scale = alpha / r).", when=LORA)
    lora_dropout: float = option(0.1, "LoRA dropout", "Dropout on the LoRA input.", when=LORA)
    lora_targets: str = option("auto", "LoRA targets", "LoRA target modules: auto (by model family) or a "
                               "comma list of layer names.", when=LORA)
    precision: str = option("auto", "Precision", "auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16.",
                            choices=PRECISIONS)
    gradient_checkpointing: bool = option(False, "Gradient checkpointing", "Recompute activations in the "
                                          "backward pass: less memory, about a third more compute.")
    trust_remote_code: bool = option(False, "Trust remote code", "Run Python code shipped with the model "
                                     "repository (off unless you trust it).")

    def problems(self) -> list[str]:
        return _invalid(self, {"lora_r": self.lora_r >= 1, "lora_alpha": self.lora_alpha >= 1,
                               "lora_dropout": 0 <= self.lora_dropout < 1,
                               "finetune": self.finetune in FINETUNE, "precision": self.precision in PRECISIONS})


@dataclass
class LossOptions:
    """FABE's loss: alpha * MLE (+ beta * ranking in full mode)."""

    mode: str = option("full", "Mode", "simple: MLE on the best candidate only; full: MLE + ranking over "
                       "all candidates.", choices=MODES)
    alpha: float = option(1.0, "alpha (MLE weight)", "Weight of the MLE loss.")
    beta: float = option(0.3, "beta (ranking weight)", "Weight of the ranking loss (full mode; simple mode "
                         "refuses any other value than its default or 0).", when=FULL_MODE)
    rank_loss: str = option("listmle", "Ranking loss", "ListMLE (listwise) or Tuna's pairwise margin loss.",
                            choices=RANK_LOSSES, when=FULL_MODE)
    margin: float = option(0.1, "Margin", "Margin m of the margin ranking loss.",
                           when={**FULL_MODE, "rank_loss": ("margin",)})

    def problems(self) -> list[str]:
        found = _invalid(self, {"mode": self.mode in MODES, "alpha": self.alpha >= 0, "beta": self.beta >= 0,
                                **_finite(self, "alpha", "beta", "margin")})
        if self.rank_loss not in RANK_LOSSES:
            found.append(f"rank_loss: Unknown loss type: {self.rank_loss}. Should be one of {list(RANK_LOSSES)}")
        if self.alpha == 0 and (self.mode == "simple" or self.beta == 0):
            found.append("alpha, beta: the loss would be zero")
        if self.mode == "simple" and self.beta not in (0, BETA_DEFAULT):
            found.append(f"beta: {self.beta} would be ignored: simple mode trains the MLE loss only; "
                         "use mode full for the ranking loss, or leave beta unset")
        return found


@dataclass
class OptimizerOptions:
    """Steps, batches and the learning-rate schedule."""

    learning_rate: float = option(1e-3, "Learning rate", "Peak learning rate.")
    lr_scheduler: str = option("cosine", "Scheduler", "Learning-rate schedule after warmup (transformers' "
                               "schedulers).", choices=SCHEDULERS)
    warmup_steps: int = option(50, "Warmup steps", "Linear warmup steps.")
    weight_decay: float = option(0.0, "Weight decay", "AdamW weight decay.")
    num_train_epochs: float = option(1.0, "Epochs", "Passes over the training split (unless max steps > 0).")
    max_steps: int = option(-1, "Max steps", "Optimizer steps; -1: use epochs.")
    batch_size: int = option(8, "Batch size", "Records per device per micro-batch.")
    gradient_accumulation_steps: int = option(1, "Gradient accumulation", "Micro-batches per optimizer step.")
    seed: int = option(0, "Seed", "Seed for data order and initialization.")

    def problems(self) -> list[str]:
        return _invalid(self, {
            "learning_rate": self.learning_rate > 0 and math.isfinite(self.learning_rate),
            "lr_scheduler": self.lr_scheduler in SCHEDULERS, "warmup_steps": self.warmup_steps >= 0,
            "weight_decay": self.weight_decay >= 0 and math.isfinite(self.weight_decay),
            "num_train_epochs": self.num_train_epochs > 0 and math.isfinite(self.num_train_epochs),
            "max_steps": self.max_steps == -1 or self.max_steps >= 1, "batch_size": self.batch_size >= 1,
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1})


@dataclass
class LoggingOptions:
    """What the run writes: metrics, evaluations and checkpoints."""

    logging_steps: int = option(10, "Logging steps", "Log metrics every N steps.")
    eval_steps: int = option(200, "Eval steps", "Evaluate every N steps (0: never).")
    save_steps: int = option(200, "Save steps", "Checkpoint every N steps.")
    save_total_limit: int = option(3, "Checkpoints kept", "Checkpoints kept on disk (older ones are deleted).")
    report_to: str = option("none", "Report to", "Also report to: none, tensorboard, wandb, ... (comma list; "
                            "the package must be installed).", suggest=("none", "tensorboard", "wandb"))

    def problems(self) -> list[str]:
        return _invalid(self, {"logging_steps": self.logging_steps >= 1, "save_steps": self.save_steps >= 1,
                               "eval_steps": self.eval_steps >= 0, "save_total_limit": self.save_total_limit >= 1})


@dataclass
class SystemOptions:
    """How the work is laid out on the hardware."""

    packing: bool = option(True, "Packing", "Each prompt once with its candidates after it, several samples "
                           "per row of max length tokens, under a block attention mask (works with gradient "
                           "checkpointing); off: one padded row per prompt + candidate.")
    attention: str = option("auto", "Attention kernel", "auto: flex attention with block masks on a CUDA GPU, "
                            "else fabe_blocks (one SDPA call per prompt and per candidate); both skip what "
                            "packed rows never attend to. sdpa and eager take the dense block mask.",
                            choices=ATTENTION)
    deepspeed: str = option("", "DeepSpeed ZeRO", "Several GPUs: zero2, zero3 or a DeepSpeed JSON file (needs "
                            "the deepspeed package); empty: plain DDP.", suggest=("", "zero2", "zero3"))

    def problems(self) -> list[str]:
        found = _invalid(self, {"attention": self.attention in ATTENTION})
        if self.deepspeed and self.deepspeed not in ZERO_STAGES and not self.deepspeed.endswith(".json"):
            found.append(f"deepspeed: {self.deepspeed!r} is neither zero2, zero3 nor a .json config file")
        return found


GROUPS = (RunOptions, DataOptions, ModelOptions, LossOptions, OptimizerOptions, LoggingOptions, SystemOptions)


# Bases in reverse: a dataclass orders inherited fields from the last base to the first.
@dataclass
class TrainConfig(SystemOptions, LoggingOptions, OptimizerOptions, LossOptions, ModelOptions, DataOptions,
                  RunOptions):
    """Everything a run needs, every group's fields flat; invalid values raise ConfigError
    naming every bad field at once."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        return config_problems(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def applies(name: str, values: dict[str, Any]) -> bool:
    """Whether option `name` has an effect given the other options' values (its `when`)."""
    return all(values.get(k) in allowed for k, allowed in FIELDS[name].metadata.get("when", {}).items())


CONTROLLERS = sorted({k for f in FIELDS.values() for k in f.metadata.get("when", {})})  # options others depend on


def config_problems(values: dict[str, Any]) -> list[str]:
    """Every problem of a full set of option values (each of the right type), without
    making a TrainConfig: what a form shows before it can make one."""
    from types import SimpleNamespace

    view = SimpleNamespace(**values)
    return [p for group in GROUPS for p in group.problems(view)]
BETA_DEFAULT = FIELDS["beta"].default


def group_fields(group: type) -> list[dataclasses.Field]:
    """The fields a group declares itself (what the form shows in its section)."""
    return [f for f in dataclasses.fields(group) if f.name in vars(group).get("__annotations__", {})]


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


def preset_values(preset: str) -> dict[str, Any]:
    """Every field's value under `preset` ('' or an unknown name: the defaults)."""
    return {**TrainConfig().to_dict(), **PRESETS.get(preset, {}), "preset": preset if preset in PRESETS else ""}


# ---------------------------------------------------------------- parsing

class ConfigParser(HfArgumentParser):
    """HfArgumentParser over TrainConfig; the form's metadata keys are not argparse's."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        for key in UI_KEYS:
            kwargs.pop(key, None)
        return super().add_argument(*args, **kwargs)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Values of a YAML or JSON config file; unknown keys and syntax errors are ValueErrors
    that name the file (and the line)."""
    import yaml

    path = str(path)
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
    check_keys(values, path, config_key_lines(path, text))
    return values


def check_keys(values: dict[str, Any], source: str, lines: dict[str, int] | None = None) -> None:
    """Refuse a key that is not an option, naming where it came from and the closest option."""
    lines = lines or {}
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"{source}:{lines[key]}" if key in lines else source
            raise ValueError(f"{where}: unknown field {key!r}{hint}")


def config_key_lines(path: str, text: str) -> dict[str, int]:
    """The line of each top-level key of a (valid) YAML or JSON config file, for messages."""
    import yaml

    if path.endswith(".json"):
        found: dict[str, int] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            for key in re.findall(r'"((?:[^"\\]|\\.)*)"\s*:', line):
                found.setdefault(key, lineno)
        return found
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _locate_problems(error: ConfigError, path: str, argv: list[str]) -> ConfigError:
    """`error` with each problem of a value that came from the config file prefixed by
    FILE:LINE, so the user knows where to fix it."""
    lines = config_key_lines(path, Path(path).read_text())
    flags = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    located = []
    for problem in error.problems:
        name = problem.split(":")[0].split(",")[0].strip()
        from_file = name in lines and name not in flags
        located.append(f"{path}:{lines[name]}: {problem}" if from_file else problem)
    return ConfigError(located)


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


def parse_flags(argv: list[str], base: dict[str, Any], prog: str = "python -m fabe train",
                extra: tuple[str, ...] = ()) -> tuple[TrainConfig, argparse.Namespace]:
    """TrainConfig from flags over `base` values, and the parsed non-config flags (`extra`
    names store_true flags such as --resume; --config and --run take a value)."""
    parser = ConfigParser(TrainConfig, prog=prog, description="Train a FABE cleaner (simple or full mode).")
    parser.add_argument("--config", help="YAML or JSON file of options (flags override it).")
    parser.add_argument("--run", help="Train the run folder from its config.json (made by `runs launch`).")
    for flag in extra:
        parser.add_argument(flag, action="store_true")
    parser.set_defaults(**base)
    cfg, rest = parser.parse_args_into_dataclasses(args=_join_negative_values(argv), return_remaining_strings=False,
                                                   look_for_args_file=False)
    return cfg, rest


def resolve_config(argv: list[str]) -> TrainConfig:
    """The config that `--preset`, `--config FILE` and flags describe, over the defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="")
    pre.add_argument("--preset", default="")
    known, _ = pre.parse_known_args(argv)
    file_values = read_config_file(known.config) if known.config else {}
    preset = known.preset or file_values.get("preset", "")
    if preset and preset not in PRESETS:
        raise ConfigError([f"preset: unknown {preset!r}; choose among {list(PRESETS)}"])
    try:
        return parse_flags(argv, {**PRESETS.get(preset, {}), **file_values, "preset": preset})[0]
    except ConfigError as e:
        raise (_locate_problems(e, known.config, argv) if known.config else e) from None


def config_from_dict(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from a resolved dict (a run's config.json): every key must be an option,
    and every option is taken as given (no preset, no default fills a gap: a missing key is
    an error too). A run written before `packing` replaced `shared_prompt` (the same loss
    with the KV cache) trains packed, with the default attention kernel."""
    if "shared_prompt" in values and "packing" not in values:
        values = {**{k: v for k, v in values.items() if k != "shared_prompt"}, "packing": True}
        values.setdefault("attention", FIELDS["attention"].default)  # added with packing
    check_keys(values, source)
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise ValueError(f"{source}: missing options {missing}; not a resolved config")
    try:
        return TrainConfig(**values)
    except ConfigError as e:
        raise ConfigError([f"{source}: {p}" for p in e.problems]) from None
