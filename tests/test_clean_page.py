"""The Clean tab's pure parts: what the record picker says of a record, when a picked
record's edits still apply, what the page says of identical candidates, and the Train
preview's clipping of code to whole lines."""

from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from fabe.cleaning.cleaner import Candidate  # noqa: E402
from fabe.data.dataset import Record  # noqa: E402
from pages import clean  # noqa: E402
from pages.clean import applies, on_typed, picked_of, record_info, record_label, results_view  # noqa: E402
from pages.context import AppContext  # noqa: E402
from pages.train import _clip  # noqa: E402

CODE = "int f(int a)\n{\n    if (0) { abort(); }\n    return a;\n}"
CLEAN = "int f(int a)\n{\n    return a;\n}"


def _record(**extra) -> Record:
    values = dict(id="r-7", input=CODE, output=[CLEAN, CODE], score=[1.0, 0.0], clean=CLEAN, trigger="dead_if",
                  edits=[{"kind": "dead_if", "start": 15, "end": 36, "text": "", "original": ""}],
                  origin={"project": "lua", "path": "src/lapi.c", "license": "MIT"})
    return Record(**{**values, **extra})


def test_the_record_picker_shows_trigger_origin_and_size():
    assert record_label(_record()) == "r-7 · dead_if · lua src/lapi.c · 5 lines"
    assert record_label(_record(trigger=None, origin=None, input=CLEAN)) == "r-7 · unpoisoned · 4 lines"
    assert "unpoisoned" in record_info(_record(trigger=None)) and "MIT licence" in record_info(_record())


def test_the_record_list_says_how_many_records_it_holds_and_when_it_is_cut(tmp_path, monkeypatch):
    split = tmp_path / "split.jsonl"
    split.write_text("".join(json.dumps(_record(id=f"r-{i}").to_dict()) + "\n" for i in range(5)))
    act = clean.Actions(AppContext(runs_dir=tmp_path / "runs", roots=[tmp_path]))
    listed = act.on_list(str(split))
    assert [v for _, v in listed["choices"]] == [f"r-{i}" for i in range(5)] and listed["info"] == "5 records listed"
    monkeypatch.setattr(clean, "MAX_LISTED", 3)
    listed = act.on_list(str(split))
    assert len(listed["choices"]) == 3 and listed["info"] == "the first 3 of 5 records listed"


def test_a_picked_record_applies_only_while_the_input_is_its_code():
    picked = picked_of(_record())
    assert applies(picked, CODE) is picked
    assert applies(picked, CODE + "\n") is None and applies(None, CODE) is None
    assert on_typed(CODE, picked) == (gr.update(),) * 3  # same code: the record stays
    forgotten, reference, info = on_typed("int g(void) { return 1; }", picked)
    assert forgotten is None and reference == "" and "no dataset record" in info


def _cand(rank: int, code: str, same_as: int | None = None) -> Candidate:
    return Candidate(rank=rank, code=code, score=-0.1 * rank, weight=0.25, parses=True, triggers_left=[],
                     finished=True, same_as=same_as)


def test_identical_candidates_are_said_and_counted():
    same = [_cand(1, CLEAN)] + [_cand(r, CLEAN, same_as=1) for r in (2, 3, 4)]
    message, _, rows, pick, *_ = results_view(CODE, same, None, False, "4 candidates.")
    assert "All 4 candidates are the same code" in message and len(rows) == 1 and rows[0][1] == 4
    assert pick["choices"] == [1]  # one distinct candidate to show
    two = [_cand(1, CLEAN), _cand(2, CLEAN, same_as=1), _cand(3, CODE), _cand(4, CODE, same_as=3)]
    message, *_ = results_view(CODE, two, None, False, "4 candidates.")
    assert "2 distinct" in message and "same code" not in message
    message, *_ = results_view(CODE, [_cand(1, CLEAN), _cand(2, CODE)], None, False, "2 candidates.")
    assert message == "2 candidates."


def test_preview_cells_keep_whole_lines():
    code = "\n".join(f"    x{i} = compute_something_long({i}, buffer_{i});" for i in range(40))
    clipped = _clip(code)
    assert len(clipped) <= 601 and clipped.endswith("…")
    kept = clipped[:-1].rstrip("\n").split("\n")
    assert kept == code.split("\n")[:len(kept)]  # every kept line whole, none cut mid-token
    assert _clip("int a;") == "int a;"
