"""Models: the embedded tiny base model and a loader for any causal LM.

Model hubs are out of reach offline, so `init_tiny` makes a default that needs nothing from
outside: a byte-level BPE tokenizer trained on the generated C corpus (and the prompt
template) and a small randomly initialized Llama, saved as an ordinary Hugging Face folder.
`load_causal_lm` serves that folder, any local model folder and hub ids alike.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fabe.files import folder_atomic, write_json_atomic
from fabe.training.prompt import PROMPT_TEMPLATE

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says which and why."""


@dataclass
class TinyConfig:
    """Shape of the embedded tiny Llama and of its tokenizer; every field is a CLI flag."""

    out: str = field(metadata={"help": "Folder to write the model and tokenizer to."})
    seed: int = field(default=0, metadata={"help": "Seed for the corpus and the weights."})
    corpus_n: int = field(default=5000, metadata={
        "help": "Generated functions the tokenizer is trained on."})
    corpus: str = field(default="", metadata={
        "help": "A corpus of real C (a Devign .json, a CodeXGLUE-style .jsonl or a folder of .c files) the "
                "tokenizer is trained on too, so real identifiers become few tokens (empty: generated code only)."})
    exclude_projects: str = field(default="", metadata={
        "help": "Projects of `corpus` the tokenizer must not see (comma list), e.g. the held-out ones."})
    transfer_from: str = field(default="", metadata={
        "help": "A causal LM of the same shape whose blocks start the new model; each new token's embedding "
                "is the mean of its pieces' embeddings under that model's tokenizer (vocabulary transfer)."})
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size."})
    hidden_size: int = field(default=192, metadata={"help": "Model width."})
    num_layers: int = field(default=6, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=6, metadata={"help": "Attention heads (divides hidden_size)."})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width."})
    max_positions: int = field(default=2048, metadata={"help": "Longest sequence, in tokens."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing model in `out`."})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads: {self.num_heads} does not divide hidden_size {self.hidden_size}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("hidden_size / num_heads must be even (rotary embeddings)")
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size: at least 300 (256 bytes + merges), got {self.vocab_size}")
        for name in ("corpus_n", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style, so any byte sequence round-trips)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=None,
                                   clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)


def tiny_llama(cfg: TinyConfig, tokenizer) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def shape_of(source: str) -> dict[str, int]:
    """The TinyConfig shape fields of a Llama model folder's config.json."""
    config = json.loads((Path(source) / "config.json").read_text())
    return {"hidden_size": config["hidden_size"], "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"], "intermediate_size": config["intermediate_size"],
            "max_positions": config["max_position_embeddings"]}


def _check_transfer_shape(cfg: TinyConfig) -> None:
    """Refuse a `transfer_from` of another shape before minutes go into the tokenizer."""
    check_model_source(cfg.transfer_from)
    if not (Path(cfg.transfer_from) / "config.json").exists():
        raise ModelLoadError(f"transfer_from: {cfg.transfer_from}: no such model folder")
    theirs = shape_of(cfg.transfer_from)
    differ = [f"{k} {getattr(cfg, k)} here, {v} there" for k, v in theirs.items() if getattr(cfg, k) != v]
    if differ:
        raise ValueError(f"transfer_from: {cfg.transfer_from} has another shape than the new model "
                         f"({'; '.join(differ)}); give the new model that model's shape")


def transfer_vocabulary(model: Any, tokenizer: Any, source: str) -> None:
    """Start `model` from the causal LM at `source` (same shape, another tokenizer): its
    blocks and norms as they are, and each token of `tokenizer` embedded as the mean of the
    embeddings of its pieces under the source's tokenizer (fast vocabulary transfer, Gee et
    al. 2022), so a model that already copies code keeps copying with the new tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    old = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=False, use_safetensors=True)
    old_tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    state = {k: v for k, v in old.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as e:
        raise ValueError(f"transfer_from: {source} has another shape than the new model "
                         f"({str(e).splitlines()[1].strip()})") from None
    if any("embed_tokens" not in k and "lm_head" not in k for k in missing):
        raise ValueError(f"transfer_from: {source} has another shape than the new model ({missing[:3]} ...)")
    old_emb = old.get_input_embeddings().weight.detach()  # (V_old, H)
    new_emb = model.get_input_embeddings().weight  # (V_new, H)
    with torch.no_grad():
        for token, i in tokenizer.get_vocab().items():
            if token in tokenizer.all_special_tokens:
                pieces = [old_tok.convert_tokens_to_ids(token)]
            else:
                pieces = old_tok(tokenizer.convert_tokens_to_string([token]), add_special_tokens=False)["input_ids"]
            if pieces:
                new_emb[i] = old_emb[pieces].mean(0)


def init_tiny(cfg: TinyConfig) -> Path:
    """Create the embedded base model folder; written to a temporary folder and renamed into
    place, so an interrupted run leaves nothing half-made."""
    from fabe.data.generator import generate_functions

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise FileExistsError(f"{out}: folder exists and is not empty (use --overwrite)")
    if cfg.transfer_from:
        _check_transfer_shape(cfg)
    logger.info("generating %d functions for the tokenizer", cfg.corpus_n)
    texts = [f.code for f in generate_functions(cfg.corpus_n, cfg.seed)]
    if cfg.corpus:
        from fabe.data.builder import BuildConfig, load_corpus, select

        real = select(load_corpus(cfg.corpus), BuildConfig(out="", exclude_projects=cfg.exclude_projects))
        logger.info("and %d functions of %s", len(real), cfg.corpus)
        texts += [f.code for f in real]
    texts.append(PROMPT_TEMPLATE)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    model = tiny_llama(cfg, tokenizer)
    if cfg.transfer_from:
        transfer_vocabulary(model, tokenizer, cfg.transfer_from)
    with folder_atomic(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "fabe_tiny.json", asdict(cfg))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny model: %.2fM parameters, vocab %d -> %s", n_params / 1e6, len(tokenizer), out)
    return out


def check_model_source(name_or_path: str) -> None:
    """Fail early, with a clear message, on a local path that is not a model folder."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name_or_path}: not a folder (expected a model folder with config.json)")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelLoadError(f"{name_or_path}: no config.json; not a Hugging Face model folder")
    elif name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(f"{name_or_path}: no such model folder")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    check_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_unreachable(name_or_path, e)) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_path: str, dtype: str = "auto", device: str = "cpu",
                   trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder or a hub id; `trust_remote_code` stays off
    unless asked. `dtype`: auto | float32 | bfloat16 | float16."""
    import pickle

    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"Unknown dtype: {dtype}. Should be one of auto, float32, bfloat16, float16")
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype if dtype == "auto" else getattr(torch, dtype),
            trust_remote_code=trust_remote_code, use_safetensors=None)
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # a .bin is read with weights_only=True
        raise ModelLoadError(_unreachable(name_or_path, e)) from e
    except RuntimeError as e:  # weights of another shape than config.json says
        raise ModelLoadError(f"{name_or_path}: its weights do not match its config.json (a checkpoint of "
                             f"another model?): {str(e).strip().splitlines()[0]}") from None
    _check_vocab(name_or_path, model, tokenizer)
    return model.to(device), tokenizer


def _check_vocab(name: str, model: Any, tokenizer: Any) -> None:
    """A tokenizer with more tokens than the model has embeddings belongs to another model:
    its extra ids would fail deep inside generation."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelLoadError(f"{name}: its tokenizer has {len(tokenizer)} tokens but the model only {rows} "
                             "embeddings: the tokenizer and the weights come from different models")


def _unreachable(name: str, err: Exception) -> str:
    return (f"cannot load model {name!r}: {str(err).strip().splitlines()[0]} "
            "(no hub here: give a local model folder, e.g. one made by "
            "`python -m fabe model init-tiny --out DIR`)")


# Attention projections by family, tried in order: Llama / Qwen / DeepSeek / Mistral,
# GPT-2 (Conv1D), GPT-NeoX / Falcon.
LORA_TARGETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("c_attn", "c_proj"),
    ("query_key_value", "dense"),
)


def linear_module_names(model: Any) -> set[str]:
    """Last name parts of the model's Linear (and GPT-2 Conv1D) layers, lm_head excluded."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return {name.split(".")[-1] for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D)) and not name.endswith("lm_head")}


def detect_lora_targets(model: Any, spec: str = "auto") -> list[str]:
    """LoRA target modules: 'auto' picks the model family's attention projections; a comma
    list is checked against the model's layers."""
    present = linear_module_names(model)
    if spec != "auto":
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        missing = [w for w in wanted if w not in present]
        if missing or not wanted:
            raise ValueError(f"lora_targets: {missing or spec!r} not in the model's linear "
                             f"layers {sorted(present)}")
        return wanted
    for family in LORA_TARGETS:
        if all(name in present for name in family):
            return list(family)
    raise ValueError(f"lora_targets: no known attention projections in this model; pass "
                     f"--lora_targets with names among {sorted(present)}")


def prepare_for_training(model: Any, lora: bool, gradient_checkpointing: bool, lora_r: int = 8,
                         lora_alpha: int = 16, lora_dropout: float = 0.1,
                         lora_targets: str = "auto") -> Any:
    """Gradient checkpointing first, with `enable_input_require_grads()` (so checkpointed
    blocks see an input that requires grad even when the embeddings are frozen), then LoRA:
    done the other way round, LoRA weights get no gradient."""
    if gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
        model.config.use_cache = False
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                        target_modules=detect_lora_targets(model, lora_targets),
                        task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("LoRA on %s: %.2fM trainable parameters", config.target_modules, trainable / 1e6)
    return model
