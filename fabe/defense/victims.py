"""Victim models: the code classifiers a backdoor attack targets and the FABE defense protects.

Any Hugging Face sequence-classification checkpoint loads by path (e.g. a backdoored CodeBERT
defect detector a user brings, or one `fabe.defense.victim_training` made). Beside the
weights, `victim.json` (where present) says the attack: its target label, trigger kinds and
the victim's own measure on held-out functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch


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


ADAPTER_CONFIG = "adapter_config.json"  # a LoRA victim: adapters and head over a base it names


def _with_adapter(path: Path):
    """A LoRA victim's classifier: its base (a folder relative to the victim's, else as named)
    in the victim's classifier config, its adapters and head merged in (as fast as a full one)."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification

    named = json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    base = path / named if (path / named).exists() else Path(named)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), config=AutoConfig.from_pretrained(str(path), trust_remote_code=False),
        use_safetensors=True, trust_remote_code=False)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def load_victim_meta(folder: str | Path) -> dict:
    """A victim folder's victim.json (its attack and measure), {} where it has none."""
    path = Path(folder) / "victim.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None


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
            if (path / ADAPTER_CONFIG).exists():
                model = _with_adapter(path)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(  # never the folder's own code
                    str(source), use_safetensors=True, trust_remote_code=False)
            if device == "cpu" and model.dtype in (torch.float16, torch.bfloat16):
                model = model.float()  # shipped in half precision to be small; a CPU computes in float32
            model = model.to(device)
            tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}: cannot load the victim classifier: {str(e).strip().splitlines()[0]}") from None
        return cls(model, tokenizer, load_victim_meta(path), str(source))

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

    def target_logprob(self, target: int) -> Callable[[Sequence[str]], list[float]]:
        """log p(target | code) of each code: the guide that steers an adversarial renaming
        toward the target class (AFRAIDOOR's crafting model)."""
        return lambda codes: self.logits(codes).log_softmax(-1)[:, target].tolist()
