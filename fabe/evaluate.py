"""Evaluation of a cleaner's top candidate on held-out records.

Per record: whether the trigger is gone (every recorded edit's text is absent from the top
candidate; without edits, the detector finds no trigger of the record's kind), whether the
clean function is restored exactly (whitespace-normalized), whether the top candidate
parses, and, for unpoisoned inputs, whether the cleaner changed code it should have left
alone. Summaries are given overall and per trigger kind.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from fabe.clean import Candidate, CleanConfig, Cleaner
from fabe.dataset import Record
from fabe.triggers import detect_triggers


def normalized(code: str) -> str:
    return " ".join(code.split())


def trigger_removed(record: Record, code: str) -> bool:
    """True when no trace of the record's trigger is left in `code`."""
    if record.edits:
        for edit in record.edits:
            text = edit["text"].strip()
            if edit["original"]:  # a renaming: the new identifier must be gone
                if re.search(rf"\b{re.escape(text)}\b", code):
                    return False
            elif normalized(text) in normalized(code):
                return False
        return True
    return record.trigger not in {d.kind for d in detect_triggers(code)}


@dataclass
class RecordResult:
    id: str
    trigger: str  # "none" for unpoisoned inputs
    top: str
    exact: bool
    removed: bool | None  # None for unpoisoned inputs
    changed: bool  # top differs from the input (whitespace-normalized)
    parses: bool
    score: float
    weight: float


def judge(record: Record, cands: list[Candidate]) -> RecordResult:
    top = cands[0]
    poisoned = record.trigger is not None
    return RecordResult(
        id=record.id, trigger=record.trigger or "none", top=top.code,
        exact=record.clean is not None and normalized(top.code) == normalized(record.clean),
        removed=trigger_removed(record, top.code) if poisoned else None,
        changed=normalized(top.code) != normalized(record.input), parses=top.parses,
        score=top.score, weight=top.weight)


def _rates(rows: Sequence[RecordResult]) -> dict[str, float | int | None]:
    poisoned = [r for r in rows if r.removed is not None]
    clean = [r for r in rows if r.removed is None]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"records": len(rows), "trigger_removal": mean([r.removed for r in poisoned]),
            "exact": mean([r.exact for r in rows]), "parse": mean([r.parses for r in rows]),
            "false_change": mean([r.changed for r in clean]),
            "top_weight": mean([r.weight for r in rows])}


def summarize(rows: Sequence[RecordResult]) -> dict:
    kinds = sorted({r.trigger for r in rows})
    return {"overall": _rates(rows),
            "by_trigger": {k: _rates([r for r in rows if r.trigger == k]) for k in kinds}}


def evaluate(cleaner: Cleaner, records: Sequence[Record], cfg: CleanConfig | None = None,
             batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
             ) -> tuple[dict, list[dict]]:
    """Clean every record; (summary, per-record rows as dicts)."""
    results = cleaner.clean_batch([r.input for r in records], cfg, batch_size, progress)
    rows = [judge(r, c) for r, c in zip(records, results)]
    return summarize(rows), [asdict(r) for r in rows]
