"""What evaluating a cleaner measures, per record and summarized.

Per record: whether the trigger is gone (every recorded edit's text is absent from the top
candidate; without edits, the detector finds no trigger of the record's kind), whether the
clean function is restored exactly (whitespace-normalized), CodeBLEU (the `codebleu`
package, tree-sitter C) and BLEU (sacrebleu) against the clean function, whether the top
candidate parses, how many lines it changed, where the clean function ranks among the K,
and, for unpoisoned inputs, whether the cleaner changed code it should have left alone.
Summaries are given overall and per trigger kind (CodeBLEU and BLEU at corpus level).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Sequence

from fabe.cleaning.cleaner import Candidate
from fabe.cleaning.trust import VERDICTS, assess
from fabe.data.dataset import Record
from fabe.data.triggers import detect_triggers


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


def lines_changed(before: str, after: str) -> int:
    """Lines removed plus lines added from `before` to `after` (surrounding spaces ignored)."""
    a = [line.strip() for line in before.splitlines()]
    b = [line.strip() for line in after.splitlines()]
    return sum(1 for line in difflib.ndiff(a, b) if line[:1] in "+-")


def codebleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CodeBLEU for C (n-gram, weighted n-gram, syntax and dataflow match, equal weights)."""
    from codebleu import calc_codebleu

    return calc_codebleu(list(references), list(hypotheses), lang="c")["codebleu"]


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU in [0, 1] (sacrebleu, its 13a tokenizer)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100


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
    lines_changed: int  # between the input and the top candidate
    clean_rank: int | None  # rank of the first candidate equal to the clean function, if any
    codebleu: float | None  # of the top candidate against the clean function
    bleu: float | None
    reference: str | None  # the clean function
    project: str | None = None  # the record's origin project, when it has one
    verdict: str | None = None  # of the cleaning (fabe.cleaning.trust)


def judge(record: Record, cands: list[Candidate]) -> RecordResult:
    top = cands[0]
    poisoned = record.trigger is not None
    clean = normalized(record.clean) if record.clean is not None else None
    rank = next((c.rank for c in cands if normalized(c.code) == clean), None)
    has_ref = record.clean is not None
    return RecordResult(
        id=record.id, trigger=record.trigger or "none", top=top.code, exact=rank == top.rank,
        removed=trigger_removed(record, top.code) if poisoned else None,
        changed=normalized(top.code) != normalized(record.input), parses=top.parses,
        score=top.score, weight=top.weight, lines_changed=lines_changed(record.input, top.code),
        clean_rank=rank, codebleu=round(codebleu([record.clean], [top.code]), 4) if has_ref else None,
        bleu=round(bleu([record.clean], [top.code]), 4) if has_ref else None, reference=record.clean,
        project=(record.origin or {}).get("project"), verdict=assess(record.input, cands).verdict)


def _rates(rows: Sequence[RecordResult]) -> dict[str, float | int | None]:
    poisoned = [r for r in rows if r.removed is not None]
    clean = [r for r in rows if r.removed is None]
    scored = [r for r in rows if r.reference is not None]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    corpus = lambda fn: round(fn([r.reference for r in scored], [r.top for r in scored]), 4) if scored else None  # noqa: E731
    return {"records": len(rows), "trigger_removal": mean([r.removed for r in poisoned]),
            "exact": mean([r.exact for r in rows]), "codebleu": corpus(codebleu), "bleu": corpus(bleu),
            "parse": mean([r.parses for r in rows]), "false_change": mean([r.changed for r in clean]),
            "clean_in_k": mean([r.clean_rank is not None for r in scored]),
            "top_weight": mean([r.weight for r in rows]),
            "lines_changed": mean([r.lines_changed for r in rows])}


def summarize(rows: Sequence[RecordResult]) -> dict:
    """Rates overall, per trigger kind and, where records carry an origin, per project; and
    how the verdicts relate to exactness."""
    kinds = sorted({r.trigger for r in rows})
    projects = sorted({r.project for r in rows if r.project})
    verdicts = {v: {"records": len(of), "exact": round(sum(r.exact for r in of) / len(of), 4)}
                for v in VERDICTS if (of := [r for r in rows if r.verdict == v])}
    return {"overall": _rates(rows), "by_trigger": {k: _rates([r for r in rows if r.trigger == k]) for k in kinds},
            "by_project": {p: _rates([r for r in rows if r.project == p]) for p in projects},
            "by_verdict": verdicts}
