"""Views of cleaning results: the poisoned input and a candidate aligned line by line (for
the CLI's text view and the app's side-by-side diff), where the triggers sit in the input,
and the ranking table (pandas)."""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass

from fabe.cleaning.cleaner import Candidate


@dataclass
class DiffRow:
    op: str  # equal | delete (only in the input) | insert (only in the candidate) | replace
    left: int | None  # 0-based line number in the input
    right: int | None  # 0-based line number in the candidate


def diff_rows(poisoned: str, cleaned: str) -> list[DiffRow]:
    """The two texts' lines aligned by difflib (surrounding spaces ignored when matching)."""
    left = [line.strip() for line in poisoned.splitlines()]
    right = [line.strip() for line in cleaned.splitlines()]
    rows = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        for i in range(max(a1 - a0, b1 - b0)):
            a = a0 + i if a0 + i < a1 else None
            b = b0 + i if b0 + i < b1 else None
            kind = op if op != "replace" else ("replace" if a is not None and b is not None
                                              else "delete" if a is not None else "insert")
            rows.append(DiffRow(kind, a, b))
    return rows


def trigger_spans(code: str, edits: list[dict] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, kind) character spans of the triggers in `code`: a record's recorded
    edits when given, else what the detector finds."""
    if edits:
        return sorted((e["start"], e["end"], e["kind"]) for e in edits)
    from fabe.data.triggers import detect_triggers

    return [(d.start, d.end, d.kind) for d in detect_triggers(code)]


def side_by_side(poisoned: str, cleaned: str, width: int | None = None) -> str:
    """Two columns, poisoned | cleaned, lines aligned by difflib: '-' removed, '+' added,
    '~' changed."""
    width = width or max(40, (shutil.get_terminal_size((160, 40)).columns - 5) // 2)
    left, right = poisoned.splitlines(), cleaned.splitlines()
    rows = [f"{'poisoned':<{width}} | cleaned"]
    marks = {"equal": " ", "delete": "-", "insert": "+", "replace": "~"}
    for row in diff_rows(poisoned, cleaned):
        a = left[row.left] if row.left is not None else ""
        b = right[row.right] if row.right is not None else ""
        rows.append(f"{a[:width]:<{width}} {marks[row.op]} {b[:width]}")
    return "\n".join(rows)


def candidates_table(cands: list[Candidate], clean: str | None = None) -> str:
    import pandas as pd

    rows = [{"rank": c.rank, "score": round(c.score, 4), "weight": round(c.weight, 3),
             "parses": c.parses, "triggers_left": ",".join(c.triggers_left) or "-",
             "finished": c.finished, "lines": c.code.count("\n") + 1} for c in cands]
    frame = pd.DataFrame(rows)
    if clean is not None:
        frame["exact"] = [" ".join(c.code.split()) == " ".join(clean.split()) for c in cands]
    return frame.to_string(index=False)
