"""Plain-text views of cleaning results for the CLI: a side-by-side line diff and the
ranking table (pandas)."""

from __future__ import annotations

import difflib
import shutil

from fabe.clean import Candidate


def side_by_side(poisoned: str, cleaned: str, width: int | None = None) -> str:
    """Two columns, poisoned | cleaned, lines aligned by difflib: '-' removed, '+' added,
    '~' changed."""
    width = width or max(40, (shutil.get_terminal_size((160, 40)).columns - 5) // 2)
    left, right = poisoned.splitlines(), cleaned.splitlines()
    rows = [f"{'poisoned':<{width}} | cleaned"]
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        n = max(a1 - a0, b1 - b0)
        for i in range(n):
            a = left[a0 + i] if a0 + i < a1 else ""
            b = right[b0 + i] if b0 + i < b1 else ""
            mark = {"equal": " ", "delete": "-", "insert": "+"}.get(op, "~")
            rows.append(f"{a[:width]:<{width}} {mark} {b[:width]}")
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
