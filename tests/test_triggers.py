"""Trigger insertion: every kind keeps code parsing, is recorded, undoes exactly, is found by
the detector, and renames never reach strings, comments or struct fields."""

from __future__ import annotations

import pytest

from fabe.data import cparse
from fabe.data.generator import generate_functions
from fabe.data.triggers import (TRIGGER_KINDS, TriggerError, detect_triggers, insert_trigger,
                           parse_kinds, remove_edits)

HANDMADE = '''static int vnc_read_chunk(VncState *vs, const char *name, size_t len)
{
    char buf[64]; /* len of buf: keep len small */
    int ret = 0;
    if (len > sizeof(buf)) {
        av_log(NULL, AV_LOG_ERROR, "len %zu too big for buf\\n", len);
        return -1;
    }
    vs->len = len; // len copied to the field len
    ret = vnc_read(vs, buf, len);
    return ret;
}
'''


def _check(code: str, kind: str, seed: int) -> None:
    poisoned = insert_trigger(code, kind, seed)
    assert poisoned.kind == kind and poisoned.edits
    assert poisoned.code != code
    if cparse.parses(code):
        assert cparse.parses(poisoned.code), poisoned.code
    for e in poisoned.edits:
        assert e.kind == kind
        assert poisoned.code[e.start:e.end] == e.text
    assert remove_edits(poisoned.code, poisoned.edits) == code
    assert kind in {d.kind for d in detect_triggers(poisoned.code)}


@pytest.mark.parametrize("kind", TRIGGER_KINDS)
def test_every_kind_on_generated_code(kind):
    for i, func in enumerate(generate_functions(60, seed=3)):
        _check(func.code, kind, seed=i)


@pytest.mark.parametrize("kind", TRIGGER_KINDS)
def test_every_kind_on_real_redis_code(kind, redis_functions):
    applied = 0
    for i, code in enumerate(redis_functions[::37]):
        try:
            _check(code, kind, seed=i)
            applied += 1
        except TriggerError:
            continue  # e.g. ident_func on a TEST_BEGIN(name) macro function
    assert applied >= 0.9 * len(redis_functions[::37])


@pytest.mark.parametrize("kind", TRIGGER_KINDS)
def test_deterministic_for_a_seed(kind):
    code = generate_functions(5, seed=1)[2].code
    assert insert_trigger(code, kind, 7) == insert_trigger(code, kind, 7)
    if kind not in ("fixed", "ident_func"):  # these two have a single possible placement
        outcomes = {insert_trigger(code, kind, s).code for s in range(20)}
        assert len(outcomes) > 1


def test_fixed_goes_right_after_the_opening_brace():
    poisoned = insert_trigger(HANDMADE, "fixed", 0)
    lines = poisoned.code.split("\n")
    assert lines[1] == "{"
    assert lines[2] == '    if (rand() < 0) printf("fail");'


def test_statement_triggers_sit_on_their_own_line_with_indentation():
    for seed in range(30):
        poisoned = insert_trigger(HANDMADE, "assert", seed)
        (edit,) = poisoned.edits
        assert edit.text.strip() == "assertTrue(1 >= 0);"
        assert edit.text.endswith("\n") and edit.text.startswith("    ")
        assert poisoned.code[edit.start - 1] == "\n"


def test_ident_var_renames_every_use_but_not_strings_comments_or_fields():
    for seed in range(40):
        poisoned = insert_trigger(HANDMADE, "ident_var", seed)
        old = poisoned.edits[0].original
        if old != "len":
            continue
        code = poisoned.code
        assert "size_t len_rb)" in code
        assert "if (len_rb > sizeof(buf))" in code and "vs->len = len_rb;" in code
        assert '"len %zu too big for buf\\n", len_rb);' in code
        assert "/* len of buf: keep len small */" in code
        assert "// len copied to the field len" in code
        assert len(poisoned.edits) == 5  # parameter + 4 uses
        break
    else:
        pytest.fail("no seed in 40 renamed `len`")


def test_ident_func_renames_definition_and_recursive_calls():
    code = "int fact(int n)\n{\n    if (n < 2)\n        return 1;\n    return n * fact(n - 1);\n}\n"
    poisoned = insert_trigger(code, "ident_func", 0, postfix="_xx")
    assert poisoned.code.count("fact_xx") == 2 and "fact(" not in poisoned.code
    assert remove_edits(poisoned.code, poisoned.edits) == code


def test_non_ascii_offsets_are_characters():
    code = 'int f(int a)\n{\n    puts("héllo wörld");\n    return a;\n}\n'
    poisoned = insert_trigger(code, "ident_var", 0)
    assert [poisoned.code[e.start:e.end] for e in poisoned.edits] == ["a_rb", "a_rb"]
    assert remove_edits(poisoned.code, poisoned.edits) == code


def test_errors_are_clear():
    with pytest.raises(TriggerError, match="no function"):
        insert_trigger("int x = 1;", "fixed")
    with pytest.raises(TriggerError, match="declares no variable"):
        insert_trigger("void f(void)\n{\n    g();\n}\n", "ident_var")
    with pytest.raises(ValueError, match="Unknown trigger kind: nope"):
        insert_trigger(HANDMADE, "nope")
    with pytest.raises(ValueError, match="Unknown trigger kind"):
        parse_kinds("fixed,bogus")
    assert parse_kinds("all") == list(TRIGGER_KINDS)


def test_clean_code_has_no_detections():
    assert detect_triggers(HANDMADE) == []
    for func in generate_functions(200, seed=5):  # generated code never looks like a trigger
        assert detect_triggers(func.code) == [], func.code
