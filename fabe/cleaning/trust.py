"""Whether a cleaning can be trusted: signals on each candidate and a verdict on the result.

A cleaner that has not learned the code in front of it still returns K candidates with
weights near 1/K, which reads like success. These signals say what a reviewer would check:
does the candidate parse, does it keep the input's signature (its return type, name and
parameter types; a trigger's identifier postfix aside), how much of the input it keeps
(lines, in order), is it the input itself or the same as a better-ranked candidate, and,
for a record with a reference, does it restore it. The verdict (`confident`, `uncertain`,
`failed`) comes with its reason; `abstain` keeps the input when no candidate is trustworthy.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Sequence

from fabe.data import cparse
from fabe.data.triggers import DEFAULT_POSTFIX

KEEP_FAILED = 0.5  # a candidate keeping less of the input's lines rewrote it
KEEP_CONFIDENT = 0.75  # lines kept for a confident verdict (a trigger is a few lines at most)
WEIGHT_CONFIDENT = 0.5  # calibrated top weight (and twice the next distinct one's) for a confident verdict
VERDICTS = ("confident", "uncertain", "failed")


def normalized(code: str) -> str:
    return " ".join(code.split())


def signature(code: str, postfix: str = DEFAULT_POSTFIX) -> str | None:
    """The first function's head (return type, name, parameter types) with the parameters'
    names left out and an identifier trigger's `postfix` dropped from the name, whitespace-
    normalized; None when no function definition is found."""
    funcs = cparse.function_definitions(cparse.parse(code))
    if not funcs:
        return None
    func, raw = funcs[0], code.encode()
    body = func.child_by_field_name("body")
    cuts = []  # (start byte, end byte, replacement)
    name = cparse.function_name_node(func)
    if name is not None:
        text = cparse.text(name)
        cuts.append((name.start_byte, name.end_byte, text[:-len(postfix)] if text.endswith(postfix) else text))
    for node in cparse.walk(func.child_by_field_name("declarator") or func):
        if node.type == "parameter_declaration":
            inner = node.child_by_field_name("declarator")
            while inner is not None and inner.type != "identifier":
                inner = inner.child_by_field_name("declarator")
            if inner is not None:
                cuts.append((inner.start_byte, inner.end_byte, ""))
    pieces, at = [], func.start_byte
    for start, end, replacement in sorted(cuts):
        pieces += [raw[at:start].decode("utf-8", "replace"), replacement]
        at = end
    pieces.append(raw[at:body.start_byte if body is not None else func.end_byte].decode("utf-8", "replace"))
    return re.sub(r"\s+([,)])", r"\1", normalized("".join(pieces)))


def kept_share(source: str, candidate: str) -> float:
    """The share of the source's (non-blank) lines that the candidate keeps, in order."""
    a = [line.strip() for line in source.splitlines() if line.strip()]
    b = [line.strip() for line in candidate.splitlines() if line.strip()]
    if not a:
        return 1.0
    matched = sum(block.size for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks())
    return round(matched / len(a), 4)


@dataclass
class Signals:
    """What a reviewer would check of one candidate."""

    keeps_signature: bool | None  # None when the input has no function definition to compare
    kept: float  # share of the input's lines kept, in order
    is_input: bool  # the candidate is the input unchanged (whitespace aside)
    same_as: int | None  # rank of a better-ranked identical candidate, else None
    matches_reference: bool | None = None  # None without a reference


def candidate_signals(source: str, codes: Sequence[str], reference: str | None = None) -> list[Signals]:
    """Signals of each candidate (in rank order) of a cleaning of `source`."""
    wanted = signature(source)
    seen: dict[str, int] = {}
    out = []
    for rank, code in enumerate(codes, 1):
        key = normalized(code)
        out.append(Signals(
            keeps_signature=None if wanted is None else signature(code) == wanted,
            kept=kept_share(source, code), is_input=key == normalized(source), same_as=seen.get(key),
            matches_reference=None if reference is None else key == normalized(reference)))
        seen.setdefault(key, rank)
    return out


def mark_reference(cands: list, reference: str | None) -> list:
    """The candidates with `matches_reference` set (left None without a reference)."""
    if reference is not None:
        for c in cands:
            c.matches_reference = normalized(c.code) == normalized(reference)
    return cands


def trustworthy(cand: Any, source_parses: bool) -> bool:
    """A candidate worth returning: it parses where the input does, keeps the signature and
    most of the input."""
    return (cand.parses or not source_parses) and cand.keeps_signature is not False and cand.kept >= KEEP_FAILED


def verdict(source: str, cands: Sequence[Any], source_parses: bool | None = None) -> tuple[str, str]:
    """(`confident` | `uncertain` | `failed`, the reason) for candidates carrying their
    signals (rank order)."""
    source_parses = cparse.parses(source) if source_parses is None else source_parses
    top = cands[0]
    if not any(trustworthy(c, source_parses) for c in cands):
        problems = []
        if source_parses and not any(c.parses for c in cands):
            problems.append("no candidate parses (the input does)")
        if all(c.keeps_signature is False for c in cands):
            problems.append("every candidate changes the function's signature")
        if all(c.kept < KEEP_FAILED for c in cands):
            problems.append(f"every candidate keeps less than {KEEP_FAILED:.0%} of the input's lines")
        return "failed", "; ".join(problems) or "no candidate parses, keeps the signature and most of the input"
    if not trustworthy(top, source_parses):
        return "uncertain", "the top candidate is not trustworthy (it does not parse, changes the signature or " \
                            "drops most of the input); a lower-ranked one is"
    if top.triggers_left:
        return "uncertain", f"the top candidate still holds a known trigger ({', '.join(top.triggers_left)})"
    if top.kept < KEEP_CONFIDENT:
        return "uncertain", f"the top candidate keeps only {top.kept:.0%} of the input's lines"
    distinct = {normalized(c.code) for c in cands}
    runner_up = max((c.weight for c in cands if normalized(c.code) != normalized(top.code)), default=0.0)
    if len(distinct) > 1 and (top.weight < WEIGHT_CONFIDENT or top.weight < 2 * runner_up):
        return "uncertain", (f"the candidates differ and the top one's weight is {top.weight:.2f} "
                             f"(next: {runner_up:.2f})")
    agree = "all candidates agree" if len(distinct) == 1 else f"top weight {top.weight:.2f}"
    change = "no change needed" if top.is_input else f"keeps {top.kept:.0%} of the input's lines"
    return "confident", f"parses, keeps the signature, {change}, no known trigger left, {agree}"


@dataclass
class Cleaning:
    """The candidates of one input and what to make of them."""

    input: str
    candidates: list  # fabe.cleaning.cleaner.Candidate, rank order
    verdict: str  # confident | uncertain | failed (fabe.cleaning.trust)
    reason: str
    abstained: bool = False  # the input is returned unchanged: no candidate was trustworthy

    @property
    def output(self) -> str:
        """The cleaned code: the top candidate, or the input when the cleaner abstained."""
        return self.input if self.abstained else self.candidates[0].code

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reason": self.reason, "abstained": self.abstained, "output": self.output,
                "candidates": [c.to_dict() for c in self.candidates]}


def assess(source: str, cands: Sequence[Any], abstain: bool = False) -> Cleaning:
    """The verdict on a cleaning; with `abstain`, the input is kept when no candidate is
    trustworthy."""
    source_parses = cparse.parses(source)  # parsed once for the verdict and the abstain rule
    label, reason = verdict(source, cands, source_parses)
    keep = abstain and label == "failed"  # failed: no candidate is trustworthy
    if keep:
        reason += "; the input is returned unchanged (abstain)"
    return Cleaning(source, list(cands), label, reason, keep)
