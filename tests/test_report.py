"""The side-by-side views: lines aligned between the poisoned input and a candidate, and
where the triggers sit in the input."""

from __future__ import annotations

from fabe.cleaning.report import diff_rows, side_by_side, trigger_spans
from fabe.data.triggers import insert_trigger

CLEAN = "int f(int a)\n{\n    int b = a + 1;\n    return b;\n}"


def test_a_removed_trigger_line_is_a_delete_row_and_its_span_is_found():
    poisoned = insert_trigger(CLEAN, "dead_loop", 0)
    rows = diff_rows(poisoned.code, CLEAN)
    removed = [r for r in rows if r.op == "delete"]
    assert len(removed) == 1 and all(r.op == "equal" for r in rows if r is not removed[0])
    line = poisoned.code.splitlines()[removed[0].left]
    (start, end, kind), = trigger_spans(poisoned.code)
    assert kind == "dead_loop" and poisoned.code[start:end].strip() in line
    assert trigger_spans(poisoned.code, [e.to_dict() for e in poisoned.edits])[0][2] == "dead_loop"
    assert "-" in side_by_side(poisoned.code, CLEAN, width=40).splitlines()[removed[0].left + 1]


def test_a_changed_line_is_a_replace_row():
    rows = diff_rows(CLEAN, CLEAN.replace("a + 1", "a + 2"))
    assert [r.op for r in rows] == ["equal", "equal", "replace", "equal", "equal"]
