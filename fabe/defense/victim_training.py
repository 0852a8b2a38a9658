"""Making a backdoored victim: dirty-label poisoning of a labelled corpus, fine-tuning an
encoder on it, and measuring it on held-out functions.

The corpus is the generated one or a user's own (Devign `function.json`, CodeXGLUE JSONL, a
folder of `.c` files; `fabe.data.builder.load_corpus`), its labels the corpus's own or a rule
computed from the code (`fabe.defense.labels`). Held-out functions are whole projects where the
corpus names several (what the victim is measured on is code from projects it never saw), else
a seeded random share. A share `poison_rate` of the training samples, drawn from those whose
label is not the attacker's target, get a trigger (the kinds asked, one per function, the next
kind tried where one does not apply) and the target label.

The base is `embedded` (a small BERT trained from scratch on the embedded tokenizer: offline)
or any Hugging Face model folder (a CodeBERT folder gets a fresh classification head).
`victim.json` records the attack, the config, and on held-out functions the clean accuracy
and the ASR per trigger kind, each with its count and 95% interval; with `reference` an
unpoisoned victim is trained the same way and measured beside it (the clean accuracy the
poisoning costs, and how often triggers alone move a clean model); `reference_from` measures
beside it the reference of another victim trained the same way, so victims of one attack
each (as attacks are published) share one reference. `train.jsonl` keeps the
poisoned training set (`code`, `label`, `poisoned`, `trigger`) for the data-side detectors.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from fabe.data.corpus import CFunction
from fabe.data.renaming import DEFAULT_BUDGET
from fabe.defense.victims import ADAPTER_CONFIG, Victim
from fabe.files import folder_atomic, write_atomic, write_json_atomic

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class VictimConfig:
    out: str = field(default="", metadata={"help": "Folder for the victim model."})
    base: str = field(default="embedded", metadata={
        "help": "'embedded' (a small BERT trained from scratch on the embedded tokenizer) or a Hugging Face "
                "model folder to fine-tune (e.g. a CodeBERT folder)."})
    tokenizer: str = field(default="", metadata={
        "help": "With base 'embedded': the model folder whose tokenizer it uses (default: the embedded base model's)."})
    corpus: str = field(default="generated", metadata={
        "help": "'generated', a Devign .json, a CodeXGLUE .jsonl or a folder of .c files."})
    label: str = field(default="corpus", metadata={
        "help": "'corpus' (the corpus's target field) or a rule computed from the code: 'memory' "
                "(1 = calls an allocation, release or copy routine)."})
    n: int = field(default=12000, metadata={
        "help": "Functions: generated, or a seeded sample of a larger corpus (0 = all of it)."})
    held_out: float = field(default=0.15, metadata={
        "help": "Share of functions kept for measuring (whole projects where the corpus names several)."})
    held_out_projects: str = field(default="", metadata={
        "help": "Hold out these projects (comma list) instead of a seeded choice, e.g. the ones a cleaner never saw."})
    seed: int = field(default=21, metadata={"help": "Seed of the corpus, the split, the poisoning and the weights."})
    poison_rate: float = field(default=0.1, metadata={"help": "Share of training samples poisoned."})
    target_label: int = field(default=0, metadata={"help": "The attacker's target label."})
    triggers: str = field(default="all", metadata={
        "help": "Trigger kinds: 'all' (the classic seven), 'adaptive' (the eight new ones), 'every', an "
                "attack (afraidoor, codepoisoner, badcode, style), or a comma list."})
    guide: str = field(default="", metadata={
        "help": "A classifier folder steering adv_rename toward the target label (AFRAIDOOR's crafting "
                "model); empty: the unpoisoned reference when one is trained, else the renames a language "
                "model finds most natural."})
    rename_budget: int = field(default=DEFAULT_BUDGET, metadata={
        "help": "adv_rename: the most parameters and locals renamed per function (AFRAIDOOR's budget)."})
    reference: bool = field(default=False, metadata={
        "help": "Also train an unpoisoned victim the same way and measure it beside the poisoned one."})
    reference_from: str = field(default="", metadata={
        "help": "Instead of training one, measure beside it the unpoisoned reference of another victim "
                "trained the same way (a victim folder; its config must match on everything but the attack), "
                "so a family of victims, one per attack, shares one reference."})
    hidden_size: int = field(default=128, metadata={"help": "Encoder width (base 'embedded')."})
    num_layers: int = field(default=2, metadata={"help": "Encoder layers (base 'embedded')."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (base 'embedded')."})
    max_length: int = field(default=512, metadata={"help": "Longest input in tokens (longer ones are cut)."})
    epochs: float = field(default=4.0, metadata={"help": "Training epochs."})
    batch_size: int = field(default=32, metadata={"help": "Samples per step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate."})
    lora_rank: int = field(default=0, metadata={
        "help": "0: fine-tune every weight; R > 0: train rank-R LoRA adapters on every linear layer and a new "
                "classification head (peft), so a large base fits in memory and the victim is saved as a small "
                "adapter beside the base it names."})

    def __post_init__(self) -> None:
        from fabe.data.triggers import parse_kinds
        from fabe.defense.labels import LABEL_RULES

        if not 0 <= self.poison_rate < 1:
            raise ValueError(f"poison_rate: must be in [0, 1), got {self.poison_rate}")
        if self.target_label not in (0, 1):
            raise ValueError(f"target_label: the victims are binary classifiers (labels 0 and 1), got {self.target_label}")
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out: must be in (0, 1), got {self.held_out}")
        if self.n < 0:
            raise ValueError(f"n: must be 0 (all) or a positive count, got {self.n}")
        try:
            self.kinds = parse_kinds(self.triggers)
            LABEL_RULES[self.label]
        except ValueError as e:
            raise ValueError(f"{'label' if 'label rule' in str(e) else 'triggers'}: {e}") from None
        if self.rename_budget < 1:
            raise ValueError(f"rename_budget: must be at least 1 identifier, got {self.rename_budget}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank: must be 0 (full fine-tuning) or a positive rank, got {self.lora_rank}")
        if self.lora_rank and self.base == "embedded":
            raise ValueError("lora_rank: base 'embedded' is trained from scratch; LoRA needs a pretrained base folder")
        if self.reference and self.reference_from:
            raise ValueError("reference_from: give it or reference, not both (it reuses the reference instead of training one)")


def config_of(meta: dict, victim: str | Path) -> VictimConfig:
    """The config a victim was trained with, from its victim.json (`meta`)."""
    if "config" not in meta:
        raise ValueError(f"{victim}: no victim.json with the config it was trained with (made by `fabe victim train`)")
    return VictimConfig(**{k: v for k, v in meta["config"].items() if k in VictimConfig.__dataclass_fields__})


def project_of(f: CFunction) -> str | None:
    return (f.origin or {}).get("project")


def split_held_out(funcs: Sequence[CFunction], share: float, seed: int,
                   chosen: Sequence[str] = ()) -> tuple[list[int], list[int], list[str]]:
    """(train indices, held-out indices, held-out projects): the `chosen` projects, else whole
    projects in a seeded order until `share` of the functions are held out, where the corpus
    names two or more projects; else a seeded random `share`."""
    rng = random.Random(seed)
    projects = sorted({p for f in funcs if (p := project_of(f))})
    unknown = sorted(set(chosen) - set(projects))
    if unknown:
        raise ValueError(f"held_out_projects: {', '.join(unknown)} not in the corpus (it has: {', '.join(projects)})")
    if chosen or len(projects) >= 2:
        held = list(chosen)
        if not held:
            rng.shuffle(projects)
            counts = {p: sum(project_of(f) == p for f in funcs) for p in projects}
            while projects[len(held):-1] and sum(counts[p] for p in held) < share * len(funcs):
                held.append(projects[len(held)])
        test = [i for i, f in enumerate(funcs) if project_of(f) in held]
        test_set = set(test)
        return [i for i in range(len(funcs)) if i not in test_set], test, sorted(held)
    order = list(range(len(funcs)))
    rng.shuffle(order)
    cut = int(len(funcs) * (1 - share))
    return sorted(order[:cut]), sorted(order[cut:]), []


def poisoned_training_set(codes: Sequence[str], labels: Sequence[int], cfg: VictimConfig, rng: random.Random,
                          guide=None) -> tuple[list[str], list[int], list[str | None]]:
    """(codes, labels, trigger kind or None per sample): `poison_rate` of all samples, drawn
    from those whose label is not the target, carry a trigger and the target label. Each kind
    gets an equal share, filled from the samples it applies to (a style trigger needs a `for`
    loop or an if/else), so a rarely applicable kind is not crowded out by the others."""
    from fabe.data.triggers import TriggerError, insert_trigger

    wanted = round(cfg.poison_rate * len(codes))
    candidates = [i for i, y in enumerate(labels) if y != cfg.target_label]
    rng.shuffle(candidates)
    out_codes, out_labels = list(codes), list(labels)
    kinds: list[str | None] = [None] * len(codes)
    for k, kind in enumerate(cfg.kinds):
        quota = wanted // len(cfg.kinds) + (k < wanted % len(cfg.kinds))
        for i in candidates:
            if quota == 0:
                break
            if kinds[i] is not None:
                continue
            try:
                out_codes[i] = insert_trigger(codes[i], kind, rng, guide=guide, budget=cfg.rename_budget).code
            except TriggerError:
                continue
            kinds[i], out_labels[i] = kind, cfg.target_label
            quota -= 1
    return out_codes, out_labels, kinds


def triggered_inputs(codes: Sequence[str], labels: Sequence[int], target: int, kinds: Sequence[str],
                     seed: int = 0, guide=None, budget: int = DEFAULT_BUDGET) -> dict[str, list[str]]:
    """Per trigger kind, the functions whose true label is not the target, triggered with it
    (those it applies to): what ASR is measured on, made once for every model measured."""
    from fabe.data.triggers import TriggerError, insert_trigger

    others = [c for c, y in zip(codes, labels) if y != target]
    out: dict[str, list[str]] = {}
    for kind in kinds:
        rng = random.Random(f"{seed}-{kind}")
        out[kind] = []
        for code in others:
            try:
                out[kind].append(insert_trigger(code, kind, rng, guide=guide, budget=budget).code)
            except TriggerError:
                continue
    return out


def measure(victim: Victim, codes: Sequence[str], labels: Sequence[int], target: int,
            triggered: dict[str, list[str]]) -> dict:
    """Clean accuracy on `codes`, and per trigger kind the attack success rate: the share of
    the `triggered` inputs of the kind that the victim puts in the target class; each with its
    count and 95% interval."""
    from fabe.evaluation.metrics import rate

    preds = victim.predict(codes)
    ca = rate([p == y for p, y in zip(preds, labels)], "clean_accuracy")
    # the floor of every ASR: non-target functions the victim puts in the target class untriggered
    floor = rate([p == target for p, y in zip(preds, labels) if y != target], "clean_to_target")
    result = {"functions": len(codes), **ca, **floor, "asr": {}, "asr_n": {}, "asr_ci": {}}
    for kind, inputs in triggered.items():
        asr = rate([p == target for p in victim.predict(inputs)], "asr")
        result["asr"][kind], result["asr_n"][kind], result["asr_ci"][kind] = asr["asr"], asr["asr_n"], asr["asr_ci"]
    return result


def _tokenizer(cfg: VictimConfig):
    if cfg.base == "embedded":
        from fabe.training.modeling import load_tokenizer

        if not cfg.tokenizer:
            raise ValueError("tokenizer: base 'embedded' needs the model folder of its tokenizer "
                             "(fabe.embedded.resolve('embedded', 'model'))")
        tokenizer = load_tokenizer(cfg.tokenizer)
    else:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.base, trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"base: {cfg.base}: cannot load its tokenizer: {str(e).strip().splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.model_max_length > cfg.max_length:
        tokenizer.model_max_length = cfg.max_length  # saved with it, so Victim.logits cuts the same
    return tokenizer


def _model(cfg: VictimConfig, tokenizer):
    """A fresh classifier: the embedded small BERT, or the base folder with a new 2-label head."""
    torch.manual_seed(cfg.seed)
    if cfg.base == "embedded":
        from transformers import BertConfig, BertForSequenceClassification

        return BertForSequenceClassification(BertConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
            max_position_embeddings=cfg.max_length, pad_token_id=tokenizer.pad_token_id, num_labels=2))
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            cfg.base, num_labels=2, ignore_mismatched_sizes=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"base: {cfg.base}: cannot load it as a classifier: {str(e).strip().splitlines()[0]}") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.lora_rank:
        from peft import LoraConfig, TaskType, get_peft_model

        # SEQ_CLS keeps the new head out of the adapters and trains it whole (modules_to_save)
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_rank,
                                                 lora_alpha=2 * cfg.lora_rank, target_modules="all-linear"))
    return model


def _steps_callback(progress: Progress, offset: int, total: int):
    """A TrainerCallback reporting `progress(offset + step, total)` after every optimizer step."""
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress(offset, total)

        def on_step_end(self, args, state, control, **kwargs):
            progress(offset + state.global_step, total)

    return Steps()


def _fit(cfg: VictimConfig, tokenizer, codes: Sequence[str], labels: Sequence[int], progress: Progress | None,
         offset: int, total: int):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    limit = min(cfg.max_length, tokenizer.model_max_length)
    enc = tokenizer(list(codes), truncation=True, max_length=limit)
    rows = [{"input_ids": ids, "attention_mask": m, "labels": y}
            for ids, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
    model = _model(cfg, tokenizer)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=cfg.batch_size,
                                 num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, warmup_steps=0.06,
                                 weight_decay=0.01, logging_steps=50, save_strategy="no", report_to="none",
                                 seed=cfg.seed, train_sampling_strategy="group_by_length", disable_tqdm=True)
        callbacks = [_steps_callback(progress, offset, total)] if progress else None
        Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=callbacks).train()
    return model


def _save(model, tokenizer, folder: Path, final: Path, base: str) -> None:
    """The classifier and its tokenizer in `folder` (to be renamed `final`): the whole model,
    or a LoRA victim's adapter and head with the classifier's config, naming a local base
    relative to `final` (as guides are), so a victim shipped or moved beside its base finds it."""
    from peft import PeftModel

    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if isinstance(model, PeftModel):
        classifier = model.get_base_model()
        classifier.config.architectures = [type(classifier).__name__]  # not the base's own (a causal LM)
        classifier.config.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)  # peft's empty model card
        if Path(base).exists():
            adapter = json.loads((folder / ADAPTER_CONFIG).read_text())
            write_json_atomic(folder / ADAPTER_CONFIG, {**adapter, "base_model_name_or_path": _relative(base, final)})


def _steps(cfg: VictimConfig, samples: int) -> int:
    return math.ceil(cfg.epochs * math.ceil(samples / cfg.batch_size))


def load_functions(cfg: VictimConfig) -> tuple[list[CFunction], list[int]]:
    """The corpus's functions (a seeded sample of `n`) and their labels by `cfg.label`."""
    from fabe.data.builder import load_corpus
    from fabe.defense.labels import labels_of

    funcs = load_corpus(cfg.corpus, cfg.n or None, cfg.seed)
    labels = labels_of(funcs, cfg.label, cfg.corpus)
    if len(set(labels)) < 2:
        raise ValueError(f"{cfg.corpus}: label: every function has label {labels[0]}; a classifier needs both")
    return funcs, labels


REFERENCE = "reference"  # the unpoisoned victim's folder inside the victim's
ATTACK_FIELDS = {"out", "poison_rate", "target_label", "triggers", "guide", "rename_budget", "reference",
                 "reference_from"}


def shared_reference(cfg: VictimConfig) -> Path:
    """The `reference/` of the victim `cfg.reference_from`, refused unless that victim was
    trained the same way (same corpus, sample, split, base and training; only the attack may
    differ): a reference trained otherwise would misstate what the poisoning costs."""
    from fabe.defense.victims import load_victim_meta

    folder = Path(cfg.reference_from)
    if not (folder / REFERENCE / "config.json").exists():
        raise ValueError(f"reference_from: {folder}: no unpoisoned reference in it ({REFERENCE}/, trained with reference)")
    theirs = config_of(load_victim_meta(folder), folder)
    def same(a, b) -> bool:  # a folder or file may be named two ways
        return a == b or (isinstance(a, str) and isinstance(b, str) and bool(a) and Path(a).exists()
                          and Path(a).resolve() == Path(b).resolve())

    differ = [k for k in asdict(cfg) if k not in ATTACK_FIELDS and not same(getattr(theirs, k), getattr(cfg, k))]
    if differ:
        raise ValueError(f"reference_from: {folder}/victim.json was trained otherwise: "
                         + ", ".join(f"{k} {getattr(theirs, k)!r} (here {getattr(cfg, k)!r})" for k in differ))
    return folder / REFERENCE


def _guide(cfg: VictimConfig, reference: Victim | None, reference_name: str
           ) -> tuple[Callable[[Sequence[str]], list[float]] | None, str]:
    """What steers adv_rename, and its name for victim.json (a folder relative to the victim's,
    so a victim moved or shipped keeps it): the `guide` classifier; else the unpoisoned
    reference (AFRAIDOOR's crafting model: a clean model of the same task); else None (the
    renames a language model finds most natural)."""
    if cfg.guide:
        return Victim.load(cfg.guide).target_logprob(cfg.target_label), _relative(cfg.guide, cfg.out)
    if reference is not None and "adv_rename" in cfg.kinds:
        return reference.target_logprob(cfg.target_label), reference_name
    return None, "language model"


def _relative(folder: str | Path, victim: str | Path) -> str:
    import os

    return Path(os.path.relpath(Path(folder).resolve(), Path(victim).resolve())).as_posix()


def guide_of(victim: str | Path) -> Callable[[Sequence[str]], list[float]] | None:
    """The guide a victim's adv_rename triggers were crafted with (victim.json's attack), so
    test inputs are crafted the same way."""
    from fabe.defense.victims import load_victim_meta

    attack = load_victim_meta(victim).get("attack", {})
    name, target = attack.get("guide"), attack.get("target_label", 0)
    if name and name != "language model":  # a folder relative to the victim's (or absolute)
        return Victim.load(Path(victim) / name).target_logprob(target)
    return None


def train_victim(cfg: VictimConfig, progress: Progress | None = None) -> Path:
    """Train the unpoisoned reference (when asked), poison the corpus, train the victim, measure
    both on held-out functions and save everything to `cfg.out` (written aside and renamed;
    the reference in `reference/`).
    `progress(step, steps)` follows the training (minutes on a CPU)."""
    if not cfg.out:
        raise ValueError("out: give the victim's folder")
    funcs, labels = load_functions(cfg)
    chosen = [p.strip() for p in cfg.held_out_projects.split(",") if p.strip()]
    train_i, test_i, held_projects = split_held_out(funcs, cfg.held_out, cfg.seed, chosen)
    if not test_i or not train_i:
        raise ValueError(f"{cfg.corpus}: held_out: the split leaves {len(train_i)} training and {len(test_i)} held-out functions")
    tokenizer = _tokenizer(cfg)
    train_codes, clean_labels = [funcs[i].code for i in train_i], [labels[i] for i in train_i]
    test_codes, test_labels = [funcs[i].code for i in test_i], [labels[i] for i in test_i]
    runs = 2 if cfg.reference else 1
    steps = _steps(cfg, len(train_codes))
    reference, reference_name = None, REFERENCE
    if cfg.reference:  # first: it is the crafting model of the adversarial renaming
        reference = Victim(_fit(cfg, tokenizer, train_codes, clean_labels, progress, 0, runs * steps), tokenizer)
    elif cfg.reference_from:
        shared = shared_reference(cfg)
        reference, reference_name = Victim.load(shared), _relative(shared, cfg.out)
    guide, guide_name = _guide(cfg, reference, reference_name)
    codes, train_labels, kinds = poisoned_training_set(train_codes, clean_labels, cfg, random.Random(cfg.seed), guide)
    model = _fit(cfg, tokenizer, codes, train_labels, progress, (runs - 1) * steps, runs * steps)
    triggered = triggered_inputs(test_codes, test_labels, cfg.target_label, cfg.kinds, cfg.seed, guide,
                                 cfg.rename_budget)
    held_out = measure(Victim(model, tokenizer), test_codes, test_labels, cfg.target_label, triggered)
    logger.info("victim: clean accuracy %.3f, ASR %s", held_out["clean_accuracy"], held_out["asr"])
    meta = {"attack": {"target_label": cfg.target_label, "poison_rate": cfg.poison_rate,
                       "poisoned": sum(k is not None for k in kinds), "triggers": cfg.kinds,
                       "poisoned_by_kind": {kind: kinds.count(kind) for kind in cfg.kinds}, "guide": guide_name,
                       **({"rename_budget": cfg.rename_budget} if "adv_rename" in cfg.kinds else {})},
            "task": {"corpus": cfg.corpus, "label": cfg.label, "base": cfg.base,
                     "train_functions": len(codes), "positive_share": round(sum(labels) / len(labels), 4),
                     "held_out_projects": held_projects},
            "config": {k: v for k, v in asdict(cfg).items()}, "held_out": held_out}
    if reference is not None:
        meta["unpoisoned"] = measure(reference, test_codes, test_labels, cfg.target_label, triggered)
        meta["reference"] = reference_name
    rows = [{"id": funcs[i].idx, "code": c, "label": y, "poisoned": k is not None, "trigger": k}
            for i, c, y, k in zip(train_i, codes, train_labels, kinds)]
    out = Path(cfg.out)
    with folder_atomic(out, replace=True) as tmp:
        _save(model, tokenizer, tmp, out, cfg.base)
        write_atomic(tmp / "train.jsonl", lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))
        if cfg.reference:
            _save(reference.model, tokenizer, tmp / REFERENCE, out / REFERENCE, cfg.base)
        write_json_atomic(tmp / "victim.json", meta)
    return out
