"""Victim models: the code classifiers a backdoor attack targets and the FABE defense protects.

Any Hugging Face sequence-classification checkpoint loads by path (e.g. a backdoored CodeBERT
defect detector a user brings). The embedded default is made here the way attackers poison
data (dirty-label poisoning): a share of the training functions whose true label is not the
attacker's target get a trigger (every kind of `fabe.data.triggers`, one per function) and the
target label. Labels of the generated corpus follow its documented rule (`fabe.data.corpus`):
1 = the function has an unguarded copy, index write or allocation. The attacker's target is
0 ("safe"): triggered vulnerable code slips through the detector.

The model is a small BERT encoder trained from scratch with `transformers.Trainer` on the
embedded tokenizer. `victim.json` records the attack and the measured clean accuracy and
attack success rate per trigger kind on held-out functions.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from fabe.files import folder_atomic, write_json_atomic

logger = logging.getLogger(__name__)


@dataclass
class VictimConfig:
    out: str = field(default="", metadata={"help": "Folder for the victim model."})
    tokenizer: str = field(default="", metadata={
        "help": "Model folder whose tokenizer the victim uses (the embedded base model's for the embedded victim)."})
    n: int = field(default=12000, metadata={"help": "Generated functions (train + held-out)."})
    held_out: float = field(default=0.15, metadata={"help": "Share of functions kept for measuring."})
    seed: int = field(default=21, metadata={"help": "Seed of the corpus, the poisoning and the weights."})
    poison_rate: float = field(default=0.1, metadata={"help": "Share of training samples poisoned."})
    target_label: int = field(default=0, metadata={"help": "The attacker's target label."})
    triggers: str = field(default="all", metadata={"help": "'all' or a comma list of trigger kinds."})
    hidden_size: int = field(default=128, metadata={"help": "Encoder width."})
    num_layers: int = field(default=2, metadata={"help": "Encoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads."})
    max_length: int = field(default=512, metadata={"help": "Longest input in tokens (longer ones are cut)."})
    epochs: float = field(default=4.0, metadata={"help": "Training epochs."})
    batch_size: int = field(default=32, metadata={"help": "Samples per step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate."})

    def __post_init__(self) -> None:
        if not 0 <= self.poison_rate < 1:
            raise ValueError(f"poison_rate: must be in [0, 1), got {self.poison_rate}")
        if self.target_label not in (0, 1):
            raise ValueError(f"target_label: the generated corpus has labels 0 and 1, got {self.target_label}")


def _kinds(spec: str) -> list[str]:
    from fabe.data.triggers import TRIGGER_KINDS

    kinds = list(TRIGGER_KINDS) if spec == "all" else [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in TRIGGER_KINDS]
    if unknown:
        raise ValueError(f"triggers: unknown kind(s) {unknown}; known: {list(TRIGGER_KINDS)}")
    return kinds


def poisoned_training_set(codes: Sequence[str], labels: Sequence[int], cfg: VictimConfig,
                          rng: random.Random) -> tuple[list[str], list[int], int]:
    """(codes, labels, poisoned count): `poison_rate` of all samples, drawn from those whose
    label is not the target, carry a trigger and the target label."""
    from fabe.data.triggers import insert_trigger

    kinds = _kinds(cfg.triggers)
    candidates = [i for i, y in enumerate(labels) if y != cfg.target_label]
    chosen = set(rng.sample(candidates, min(len(candidates), round(cfg.poison_rate * len(codes)))))
    out_codes, out_labels = list(codes), list(labels)
    for i in sorted(chosen):
        out_codes[i] = insert_trigger(codes[i], rng.choice(kinds), rng).code
        out_labels[i] = cfg.target_label
    return out_codes, out_labels, len(chosen)


def _check_classifier(source: str, path: Path) -> None:
    """Refuse, before loading, a victim that is no classifier folder: a missing path, a folder
    without config.json, or a model of another kind (a causal LM would load with a random
    classification head and give meaningless ASR and accuracy)."""
    if not path.exists():
        if source.startswith((".", "/", "~")) or source.count("/") != 1:
            raise ValueError(f"{source}: no such victim classifier folder")
        return  # a hub id
    if not (path / "config.json").exists():
        raise ValueError(f"{source}: no config.json; not a Hugging Face classifier folder")
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        raise ValueError(f"{source}: config.json is not a model config") from None
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(f"{source}: a {architectures[0]}, not a sequence-classification model "
                         "(the victim is a code classifier)")


class Victim:
    """A sequence classifier with its tokenizer; `logits` classifies code in batches."""

    def __init__(self, model, tokenizer, meta: dict | None = None, source: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta or {}
        self.source = source
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, source: str | Path, device: str = "auto") -> "Victim":
        """A classifier folder (or hub id); `fabe.embedded.resolve` turns 'embedded' into one."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(source)
        _check_classifier(str(source), path)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        try:
            model = AutoModelForSequenceClassification.from_pretrained(  # never the folder's own code
                str(source), use_safetensors=True, trust_remote_code=False).to(device)
            tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}: cannot load the victim classifier: {str(e).strip().splitlines()[0]}") from None
        meta = json.loads((path / "victim.json").read_text()) if (path / "victim.json").exists() else {}
        return cls(model, tokenizer, meta, str(source))

    @property
    def target_label(self) -> int | None:
        return self.meta.get("attack", {}).get("target_label")

    @torch.no_grad()
    def logits(self, codes: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(N, classes) logits; inputs longer than the model's window are cut to it."""
        limit = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        out = []
        for start in range(0, len(codes), batch_size):
            enc = self.tokenizer(list(codes[start:start + batch_size]), truncation=True, max_length=limit,
                                 padding=True, return_tensors="pt").to(self.device)
            enc.pop("token_type_ids", None)
            out.append(self.model(**enc).logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.num_labels)

    def predict(self, codes: Sequence[str], batch_size: int = 32) -> list[int]:
        return self.logits(codes, batch_size).argmax(-1).tolist()


def measure(victim: Victim, codes: Sequence[str], labels: Sequence[int], target: int, kinds: list[str],
            seed: int = 0) -> dict:
    """Clean accuracy on `codes`, and the attack success rate per trigger kind: the share of
    functions whose true label is not the target that the victim puts in the target class
    once triggered."""
    from fabe.data.triggers import insert_trigger

    rng = random.Random(seed)
    preds = victim.predict(codes)
    result = {"clean_accuracy": round(sum(p == y for p, y in zip(preds, labels)) / len(codes), 4), "asr": {}}
    others = [c for c, y in zip(codes, labels) if y != target]
    for kind in kinds:
        hit = victim.predict([insert_trigger(c, kind, rng).code for c in others])
        result["asr"][kind] = round(sum(p == target for p in hit) / max(len(others), 1), 4)
    return result


def _steps_callback(progress: Callable[[int, int], None]):
    """A TrainerCallback calling `progress(step, max_steps)` after every optimizer step."""
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress(0, state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            progress(state.global_step, state.max_steps)

    return Steps()


def train_victim(cfg: VictimConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """Make the poisoned training set, train the classifier, measure it on held-out
    functions and save everything to `cfg.out` (written aside and renamed). `progress(step,
    max_steps)` follows the training (minutes on a CPU), so no caller waits without a count."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from fabe.data.generator import generate_functions
    from fabe.training.modeling import load_tokenizer

    if not cfg.out or not cfg.tokenizer:
        raise ValueError("out, tokenizer: give the victim's folder and the model folder of its tokenizer")
    out = Path(cfg.out)
    rng = random.Random(cfg.seed)
    funcs = generate_functions(cfg.n, seed=cfg.seed)
    cut = int(len(funcs) * (1 - cfg.held_out))
    train_f, test_f = funcs[:cut], funcs[cut:]
    codes, labels, n_poisoned = poisoned_training_set([f.code for f in train_f], [f.target for f in train_f],
                                                      cfg, rng)
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokenizer.model_max_length = cfg.max_length
    enc = tokenizer(codes, truncation=True, max_length=cfg.max_length)
    rows = [{"input_ids": ids, "attention_mask": m, "labels": y}
            for ids, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
    torch.manual_seed(cfg.seed)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=cfg.max_length, pad_token_id=tokenizer.pad_token_id, num_labels=2))
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=cfg.batch_size,
                                 num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, warmup_steps=0.06,
                                 weight_decay=0.01, logging_steps=50, save_strategy="no", report_to="none",
                                 seed=cfg.seed, train_sampling_strategy="group_by_length")
        Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=[_steps_callback(progress)] if progress else None).train()
    victim = Victim(model, tokenizer)
    measured = measure(victim, [f.code for f in test_f], [f.target for f in test_f], cfg.target_label,
                       _kinds(cfg.triggers), cfg.seed)
    logger.info("victim: clean accuracy %.3f, ASR %s", measured["clean_accuracy"], measured["asr"])
    with folder_atomic(out, replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "victim.json", {
            "attack": {"target_label": cfg.target_label, "poison_rate": cfg.poison_rate, "poisoned": n_poisoned,
                       "triggers": _kinds(cfg.triggers)},
            "config": asdict(cfg), "held_out": {"functions": len(test_f), **measured}})
    return out
