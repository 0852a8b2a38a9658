"""What evaluating a cleaner measures, per record and summarized.

Per record: whether the trigger is gone (every recorded edit's text or new name is absent from
the top candidate; without edits, the detector finds no trigger of the record's kind), whether the
clean function is restored exactly (whitespace-normalized), CodeBLEU (the `codebleu`
package, tree-sitter C) and BLEU (sacrebleu) against the clean function, whether the top
candidate parses, how many lines it changed, where the clean function ranks among the K,
and, for unpoisoned inputs, whether the cleaner changed code it should have left alone.
Summaries are given overall and per trigger kind (CodeBLEU and BLEU at corpus level).
Every rate of a count comes with the count it is over (`exact_n`) and its 95% Wilson score
interval (`exact_ci`, `[low, high]`): at the few records per kind of a small evaluation the
interval says how little a rate of 2/3 proves.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from fabe.cleaning.trust import VERDICTS, assess
from fabe.data.dataset import Record
from fabe.data.triggers import detect_triggers

if TYPE_CHECKING:
    from fabe.cleaning.cleaner import Candidate


Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def wilson(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval [low, high] of a proportion `successes / n` (Wilson 1927;
    Brown, Cai & DasGupta 2001 recommend it over the normal one, which collapses to [0, 0] at
    0/n); None when n is 0. Rounded to 6 decimals (2 more than the rates, so that a
    percentage with one decimal shown from it is rounded once, not twice)."""
    if n == 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes: must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round(max(0.0, center - half), 6), round(min(1.0, center + half), 6)]


def rate(flags: Sequence[bool], name: str) -> dict[str, float | int | list[float] | None]:
    """`name` (the share of true flags, None without any), `name_n` (how many) and `name_ci`
    (its 95% Wilson interval)."""
    hits, n = sum(bool(f) for f in flags), len(flags)
    return {name: round(hits / n, 4) if n else None, f"{name}_n": n, f"{name}_ci": wilson(hits, n)}


def normalized(code: str) -> str:
    return " ".join(code.split())


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def trigger_removed(record: Record, code: str) -> bool:
    """True when no trace of the record's trigger is left in `code`: a renaming (identifier
    for identifier) is gone when the new name is; an insertion or a rewritten statement (the
    style kinds) when its text is, whitespace-normalized."""
    if record.edits:
        for edit in record.edits:
            text = edit["text"].strip()
            if _IDENTIFIER.fullmatch(text) and _IDENTIFIER.fullmatch(edit["original"].strip()):
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


RATES = ("trigger_removal", "exact", "parse", "false_change", "clean_in_k")  # shares of a count: with _n, _ci


def _rates(rows: Sequence[RecordResult]) -> dict[str, float | int | list[float] | None]:
    poisoned = [r for r in rows if r.removed is not None]
    clean = [r for r in rows if r.removed is None]
    scored = [r for r in rows if r.reference is not None]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    corpus = lambda fn: round(fn([r.reference for r in scored], [r.top for r in scored]), 4) if scored else None  # noqa: E731
    return {"records": len(rows), **rate([r.removed for r in poisoned], "trigger_removal"),
            **rate([r.exact for r in rows], "exact"), "codebleu": corpus(codebleu), "bleu": corpus(bleu),
            **rate([r.parses for r in rows], "parse"), **rate([r.changed for r in clean], "false_change"),
            **rate([r.clean_rank is not None for r in scored], "clean_in_k"),
            "top_weight": mean([r.weight for r in rows]),
            "lines_changed": mean([r.lines_changed for r in rows])}


def summarize(rows: Sequence[RecordResult]) -> dict:
    """Rates overall, per trigger kind and, where records carry an origin, per project; and
    how the verdicts relate to exactness."""
    kinds = sorted({r.trigger for r in rows})
    projects = sorted({r.project for r in rows if r.project})
    verdicts = {v: {"records": len(of), **rate([r.exact for r in of], "exact")}
                for v in VERDICTS if (of := [r for r in rows if r.verdict == v])}
    return {"overall": _rates(rows), "by_trigger": {k: _rates([r for r in rows if r.trigger == k]) for k in kinds},
            "by_project": {p: _rates([r for r in rows if r.project == p]) for p in projects},
            "by_verdict": verdicts}
