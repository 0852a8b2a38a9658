"""Export a trained cleaner as one plain Hugging Face model folder for use outside the app:
a LoRA adapter is merged into its base model (`merge_and_unload`), a full fine-tune is saved
as is; weights in safetensors, with the tokenizer and `fabe.json`. Written to a temporary
folder and renamed, so a failed export leaves nothing half-written."""

from __future__ import annotations

import logging
from pathlib import Path

from fabe.files import folder_atomic, write_json_atomic

logger = logging.getLogger(__name__)


def export_model(source: str | Path, out: str | Path, dtype: str = "auto") -> Path:
    """Merge/save the cleaner at `source` (a run, its final/, a checkpoint) into `out`."""
    from fabe.cleaning.loading import load_trained

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: exists; choose a new folder for the export")
    model, tokenizer, meta = load_trained(str(source), device="cpu", dtype=dtype)
    merged = hasattr(model, "merge_and_unload")
    if merged:
        model = model.merge_and_unload()
    with folder_atomic(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.padding_side = "right"
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "fabe.json", {**meta, "exported_from": str(source), "merged_lora": merged,
                                              "finetune": "full"})
    logger.info("exported %s to %s (%s)", source, out, "LoRA merged" if merged else "full model")
    return out
