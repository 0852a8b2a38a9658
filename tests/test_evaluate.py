"""Top-candidate metrics on hand-made cases: a perfect cleaner, an identity cleaner."""

from __future__ import annotations

import pytest

from fabe.builder import BuildConfig, build_dataset
from fabe.clean import _candidates
from fabe.evaluate import judge, summarize, trigger_removed


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    splits = build_dataset(BuildConfig(out=str(tmp_path_factory.mktemp("ev")), n=80, seed=4,
                                       clean_share=0.25))
    return [r for rs in splits.values() for r in rs]


def _as_cleaner_output(code: str):
    return _candidates([code, code + "\n// other"], [-0.1, -0.9], [True, True])


def test_a_perfect_cleaner_scores_one_everywhere(records):
    summary = summarize([judge(r, _as_cleaner_output(r.clean)) for r in records])
    o = summary["overall"]
    assert (o["trigger_removal"], o["exact"], o["parse"], o["false_change"]) == (1.0, 1.0, 1.0, 0.0)
    assert set(summary["by_trigger"]) >= {"none", "fixed", "ident_var"}
    assert all(v["exact"] == 1.0 for v in summary["by_trigger"].values())


def test_an_identity_cleaner_removes_nothing_and_changes_nothing(records):
    summary = summarize([judge(r, _as_cleaner_output(r.input)) for r in records])
    o = summary["overall"]
    assert o["trigger_removal"] == 0.0 and o["false_change"] == 0.0
    unpoisoned = sum(r.trigger is None for r in records)
    assert o["exact"] == pytest.approx(unpoisoned / len(records), abs=1e-4)


def test_partial_renaming_is_not_removal(records):
    rec = next(r for r in records if r.trigger == "ident_var" and len(r.edits) >= 2)
    from fabe.triggers import Edit, remove_edits

    edits = [Edit.from_dict(e) for e in rec.edits]
    half = remove_edits(rec.input, edits[:1])  # one use still carries the postfix
    assert not trigger_removed(rec, half)
    assert trigger_removed(rec, rec.clean)
