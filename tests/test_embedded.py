"""The shipped embedded cleaner: it loads by default and cleans generated code it never saw
(a quality floor, so a broken checkpoint or a changed prompt is caught)."""

from __future__ import annotations

import difflib
import json

import pytest

from fabe.embedded import SHIPPED, default_cleaner

pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no embedded cleaner shipped")


def test_the_shipped_cleaner_removes_triggers_from_unseen_functions():
    from fabe.clean import CleanConfig, Cleaner
    from fabe.corpus import generate_functions
    from fabe.prompt import PROMPT_VERSION
    from fabe.triggers import insert_trigger

    assert json.loads((SHIPPED / "fabe.json").read_text())["prompt_version"] == PROMPT_VERSION
    cleaner = Cleaner.load(default_cleaner())
    funcs = generate_functions(4, seed=777)  # the recipe trained on seed 11
    poisoned = [insert_trigger(f.code, kind, i).code
                for i, (f, kind) in enumerate(zip(funcs, ["fixed", "assert", "dead_loop", "grammar"]))]
    results = cleaner.clean_batch(poisoned, CleanConfig(k=2), batch_size=4)
    tops = [r[0] for r in results]
    assert sum(not t.triggers_left for t in tops) >= 3
    similarity = [difflib.SequenceMatcher(a=f.code, b=t.code).ratio() for f, t in zip(funcs, tops)]
    assert sum(similarity) / len(similarity) >= 0.85, similarity
