"""Loading a trained cleaner: a run (its final/), a final/ or checkpoint-N folder, or a plain
model folder. A LoRA adapter is put on its base model (named in fabe.json or the run's
config.json), after checking that it was trained on that base: an adapter on another base
would load and produce nonsense.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fabe import embedded
from fabe.training.modeling import ModelLoadError, load_causal_lm, load_tokenizer


def _base_of(folder: Path) -> str:
    """The base model of an adapter folder: its final/fabe.json, else the run's config.json."""
    for meta in (folder / "fabe.json", folder.parent / "config.json"):
        if meta.exists():
            data = json.loads(meta.read_text())
            return data.get("base_model") or data["train"]["model"]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    return adapter["base_model_name_or_path"]


def _put_adapter(model: Any, path: Path, base: str, base_tokenizer: Any, tokenizer: Any) -> Any:
    """The LoRA adapter at `path` on `model`, refused with a message when it was trained on
    another base model than `base`: a tokenizer that differs from the base's (it would load
    and produce nonsense) or layers of other shapes (peft's own error lists every tensor)."""
    from peft import PeftModel

    if tokenizer.get_vocab() != base_tokenizer.get_vocab():
        sizes = f"{len(tokenizer)} vs {len(base_tokenizer)} tokens" if len(tokenizer) != len(base_tokenizer) \
            else "other tokens"
        raise ModelLoadError(f"{path}: its tokenizer differs from the one of its base model {base!r} "
                             f"({sizes}): the adapter was trained on another base model")
    try:
        return PeftModel.from_pretrained(model, str(path))
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise ModelLoadError(f"{path}: this LoRA adapter does not fit its base model {base!r}; it was "
                             f"trained on another base model ({first})") from None


def model_folder(source: str | Path) -> Path:
    """The folder a cleaner loads from: a run directory's final/, else `source` itself."""
    path = Path(source)
    if (path / "final").is_dir():
        return path / "final"
    if (path / "status.json").exists():
        raise ModelLoadError(f"{source}: a run directory without final/ (the run has not finished); "
                             "give one of its checkpoint-N folders")
    return path


def load_trained(source: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any, dict]:
    """(model, tokenizer, fabe.json or {}) from a run directory (its final/), a final/ or
    checkpoint-N folder (a LoRA adapter is put on its base model), or a plain model."""
    path = model_folder(source)
    meta = json.loads((path / "fabe.json").read_text()) if (path / "fabe.json").exists() else {}
    if (path / "adapter_config.json").exists():
        base = _base_of(path)
        model, base_tokenizer = load_causal_lm(embedded.resolve(base, "model"), dtype=dtype, device=device)
        tokenizer = load_tokenizer(str(path))
        model = _put_adapter(model, path, base, base_tokenizer, tokenizer).to(device)
    else:
        model, tokenizer = load_causal_lm(str(path) if path.exists() else source, dtype=dtype, device=device)
    tokenizer.padding_side = "left"
    return model, tokenizer, meta
