"""The adaptive and stealthy trigger kinds: each undoes exactly, keeps code parsing and is
deterministic, on generated and real functions; the style rewrites keep what a program
prints (gcc); the guide steers `adv_rename` within its budget; groups, detection, the
removal metric and the builder know the new kinds."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fabe.data import cparse
from fabe.data.builder import BuildConfig, build_dataset
from fabe.data.dataset import Record
from fabe.data.generator import generate_functions
from fabe.data.renaming import NAME_POOL, adversarial_rename
from fabe.data.style import for_to_while, if_to_ternary, index_to_pointer, while_to_for
from fabe.data.triggers import (ADAPTIVE_KINDS, ALL_KINDS, TRIGGER_KINDS, Edit, TriggerError,
                                detect_triggers, insert_trigger, parse_kinds, remove_edits)
from fabe.evaluation.metrics import trigger_removed

ASSETS = Path(__file__).resolve().parents[1] / "fabe" / "assets" / "examples" / "realc.jsonl"
REALC = Path(__file__).resolve().parents[2] / "shared" / "data" / "realc_functions.jsonl"

# One construct of each style kind per function, and the refusals next to them.
STYLED = '''int styled(int n, int *a)
{
    int s = 0, i, j;
    for (i = 0; i < n; i++)
        s += a[i];
    for (int k = 0, m = n; k < m; k++, m--) {
        if (a[k] < 0)
            break;
        for (j = 0; j < 3; j++) {
            if (j == 1)
                continue;
            s += j * k;
        }
        switch (a[m - 1] & 3) {
        case 1:
            s -= m;
            break;
        default:
            s += 1;
        }
    }
    if (n == 2) {
        if (s < 0) {
            return -s;
        }
        return s > 5 ? s : s * 2;
    }
    if (n == 6) {
        if (a[0] > s)
            return s = a[0] - s, s * 3;
        return s;
    }
    for (;;) { if (s > 100) s -= 7; else break; }
    i = n;
    while (i-- > 1)
        s ^= a[i] + a[i - 1];
    while (s > 1000) { s /= 3; }
    if (n > 3) s = s * 2 + 1; else { s = s - a[0]; }
    if (s & 1)
        return s / 2;
    else
        return s + (n > 1 ? a[1] : 0);
}
'''
GCC_MAIN = '''
int main(void)
{
    int a[8] = {5, -3, 9, 2, 7, -1, 4, 8};
    for (int n = 1; n <= 8; n++)
        for (int r = 0; r < 8; r++) {
            int b[8];
            for (int q = 0; q < 8; q++)
                b[q] = a[(q + r) % 8] * (r - 3);
            printf("%d %d %d\\n", n, r, styled(n, b));
        }
    return 0;
}
'''


def _real_examples() -> list[str]:
    with ASSETS.open() as f:
        return list(dict.fromkeys(json.loads(line)["clean"] for line in f))


def _check(code: str, kind: str, seed: int) -> None:
    poisoned = insert_trigger(code, kind, seed)
    assert poisoned.kind == kind and poisoned.edits and poisoned.code != code
    if cparse.parses(code):
        assert cparse.parses(poisoned.code), poisoned.code
    for e in poisoned.edits:
        assert e.kind == kind and poisoned.code[e.start:e.end] == e.text
    assert remove_edits(poisoned.code, poisoned.edits) == code
    assert insert_trigger(code, kind, seed) == poisoned


def _applied(codes: list[str], kind: str) -> int:
    applied = 0
    for i, code in enumerate(codes):
        try:
            _check(code, kind, seed=i)
        except TriggerError:
            continue
        applied += 1
    return applied


# Least share of the functions each kind must apply to (the style kinds need their construct;
# generated code has no if/else of the ternary shape, only the odd `if (c) return a; return b;`:
# 1 of these 60, 3% of 500; 7 of the 88 shipped examples).
MIN_SHARE_GENERATED = {"adv_rename": 0.95, "cp_func": 1.0, "cp_stmt": 1.0, "mixed": 0.95,
                       "for_while": 0.3, "ternary": 0.01, "while_for": 0.05, "index_ptr": 0.5}
MIN_SHARE_REAL = {"adv_rename": 0.85, "cp_func": 0.9, "cp_stmt": 0.95, "mixed": 0.85,
                  "for_while": 0.05, "ternary": 0.04, "while_for": 0.05, "index_ptr": 0.05}


@pytest.mark.parametrize("kind", ADAPTIVE_KINDS)
def test_every_new_kind_on_generated_code(kind):
    codes = [f.code for f in generate_functions(25 if kind == "adv_rename" else 60, seed=3)]  # 0.1 s each
    assert _applied(codes, kind) >= MIN_SHARE_GENERATED[kind] * len(codes)


@pytest.mark.parametrize("kind", ADAPTIVE_KINDS)
def test_every_new_kind_on_the_shipped_real_examples(kind):
    codes = _real_examples()
    assert len(codes) > 50
    assert _applied(codes, kind) >= MIN_SHARE_REAL[kind] * len(codes)


# measured on every 50th function: 13.5%, 7.5%, 4.8%, 22.7%
@pytest.mark.parametrize("kind, share", [("for_while", 0.1), ("ternary", 0.05), ("while_for", 0.03), ("index_ptr", 0.15)])
def test_style_kinds_on_real_functions(kind, share):
    if not REALC.exists():
        pytest.skip(f"{REALC} is absent (it exists only beside the development checkout and in CI)")
    with REALC.open() as f:
        codes = [json.loads(line)["func"] for i, line in enumerate(f) if i % 50 == 0]
    assert _applied(codes, kind) >= share * len(codes)


@pytest.mark.parametrize("kind", ADAPTIVE_KINDS)
def test_varied_for_seeds(kind):
    outcomes = {insert_trigger(STYLED, kind, s).code for s in range(12)}
    assert len(outcomes) > 1


# ---------------------------------------------------------------- style rewrites

def test_for_while_rewrites_as_designed():
    outcomes = {for_to_while(STYLED, random.Random(s)).edits[0].text for s in range(30)}
    assert len(outcomes) == 3  # the `j` loop is refused: its `continue` would skip `j++`
    assert "i = 0;\n    while (i < n) {\n        s += a[i];\n        i++;\n    }" in outcomes
    assert "while (1) { if (s > 100) s -= 7; else break; }" in outcomes
    (loop,) = [o for o in outcomes if o.startswith("int k = 0, m = n;\n    while (k < m) {\n")]
    assert loop.endswith("            s += 1;\n        }\n        k++, m--;\n    }")
    assert "for (j = 0; j < 3; j++) {" in loop


def _func(*lines: str) -> str:
    return "void f(int n)\n{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


@pytest.mark.parametrize("code, why", [
    (_func("int i;", "for (i = 0; i < n; i++) {", "    if (i == 2)", "        continue;", "    g(i);", "}"),
     "continue"),
    (_func("for (int i = 0; i < n; i++)", "    g(i);", "for (int i = 0; i < n; i++)", "    h(i);"),
     "declared or used elsewhere"),
    (_func("int i;", "for (i = 0; i < n; i++) {", "    int i = 3;", "    g(i);", "}"), "the update uses"),
    (_func("int i;", "if (n)", "    for (i = 0; i < n; i++)", "        g(i);"),
     "not a statement of its own line in a block"),
])
def test_for_while_refuses_what_would_change_the_meaning(code, why):
    with pytest.raises(TriggerError, match=why):
        insert_trigger(code, "for_while")


def test_continue_of_an_inner_loop_or_without_update_is_fine():
    no_update = _func("int i = 0;", "for (; i < n;) {", "    if (g(i++))", "        continue;", "}")
    assert insert_trigger(no_update, "for_while").edits[0].text.startswith("while (i < n) {")
    inner = _func("int i, j;", "for (i = 0; i < n; i++) {", "    for (j = 0; j < i; j++) {", "        if (j == 2)",
                  "            continue;", "        g(j);", "    }", "}")
    assert insert_trigger(inner, "for_while").code == _func(
        "int i, j;", "i = 0;", "while (i < n) {", "    for (j = 0; j < i; j++) {", "        if (j == 2)",
        "            continue;", "        g(j);", "    }", "    i++;", "}")


def test_ternary_rewrites_as_designed():
    outcomes = {if_to_ternary(STYLED, random.Random(s)).edits[0].text for s in range(30)}
    assert outcomes == {"s = (n > 3) ? s * 2 + 1 : s - a[0];",  # braces around one branch
                        "return (s & 1) ? s / 2 : s + (n > 1 ? a[1] : 0);",
                        "return (s < 0) ? -s : (s > 5 ? s : s * 2);",  # if without else, then return
                        "return (a[0] > s) ? (s = a[0] - s, s * 3) : s;"}


@pytest.mark.parametrize("lines, text", [
    (("if (c)", "    return y + 1;", "return y * 2;"), "return (c) ? y + 1 : y * 2;"),
    (("if (c) {", "    return c > 1 ? c : 2;", "}", "", "return y = 3, y;"), "return (c) ? (c > 1 ? c : 2) : (y = 3, y);"),
    (("if (c) return 1; else return 2;", "return y;"), "return (c) ? 1 : 2;"),  # with else: the old form only
])
def test_ternary_joins_an_if_without_else_and_the_return_after_it(lines, text):
    code = "int f(int c, int y)\n{\n    g(c);\n" + "".join(f"    {line}\n" for line in lines) + "}\n"
    poisoned = insert_trigger(code, "ternary")
    (edit,) = poisoned.edits
    assert edit.text == text and cparse.parses(poisoned.code)
    joined = "else" not in lines[0]
    assert edit.original == ("\n    ".join(lines) if joined else lines[0])
    assert poisoned.code == code.replace(edit.original, text)
    assert remove_edits(poisoned.code, poisoned.edits) == code


@pytest.mark.parametrize("lines, why", [
    (("if (c)", "    return;", "return y;"), "a return without a value"),
    (("if (c)", "    return 1;", "return;"), "a return without a value"),
    (("if (c)", "    return 1;", "g(y);", "return y;"), "not followed by a return"),
    (("if (c)", "    return 1;", "/* else */", "return y;"), "a comment or preprocessor line"),
    (("if (c)", "    return 1;", "#define Y 2", "return y;"), "a comment or preprocessor line"),
    (("if (c) { g(c); return 1; }", "return y;"), "no else branch"),
    (("if (c) return 1;",), "not followed by a return"),
])
def test_ternary_refuses_an_if_without_else_otherwise(lines, why):
    code = "int f(int c, int y)\n{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"
    with pytest.raises(TriggerError, match=why):
        insert_trigger(code, "ternary")


def test_ternary_joined_form_on_generated_and_real_code():
    codes = [f.code for f in generate_functions(60, seed=3)] + _real_examples()
    joined = 0
    for i, code in enumerate(codes):
        try:
            _check(code, "ternary", i)
        except TriggerError:
            continue
        (edit,) = insert_trigger(code, "ternary", i).edits
        joined += edit.original.startswith("if") and "else" not in edit.original
    assert joined >= 3


@pytest.mark.parametrize("code", [
    "int f(int c)\n{\n    int x;\n    if (c) x += 1; else x += 2;\n    return x;\n}\n",  # not a plain =
    "int f(int c)\n{\n    int x, y;\n    if (c) x = 1; else y = 2;\n    return x + y;\n}\n",  # two targets
    "int f(int c)\n{\n    int x;\n    if (c) { x = 1; g(); } else x = 2;\n    return x;\n}\n",  # two statements
    "int f(int c)\n{\n    int x = 0;\n    if (c) x = 1;\n    return x;\n}\n",  # no else
])
def test_ternary_refuses_other_ifs(code):
    with pytest.raises(TriggerError):
        insert_trigger(code, "ternary")


def test_ternary_parenthesizes_low_precedence_operands():
    code = "int f(int c, int y)\n{\n    int x;\n    if (c) x = y = 1; else x = (y, 2);\n    return x;\n}\n"
    assert insert_trigger(code, "ternary").edits[0].text == "x = (c) ? (y = 1) : (y, 2);"


def test_while_for_rewrites_the_header_only():
    outcomes = {(e.original, e.text) for s in range(20) for e in while_to_for(STYLED, random.Random(s)).edits}
    assert outcomes == {("while (i-- > 1)", "for (; i-- > 1;)"), ("while (s > 1000)", "for (; s > 1000;)")}
    code = _func("while (n > 0 /* left */) {", "    if (g(n--))", "        continue;", "}", "do n++; while (n < 3);")
    poisoned = insert_trigger(code, "while_for")
    assert poisoned.code == code.replace("while (n > 0 /* left */) {", "for (; n > 0 /* left */;) {")  # not the do loop
    with pytest.raises(TriggerError, match="no while statement"):
        insert_trigger(_func("do n++; while (n < 3);"), "while_for")


@pytest.mark.parametrize("line, original, rewritten", [
    ("x = a[i];", "a[i]", "x = *(a + i);"),
    ("x = p->buf[i + 1];", "p->buf[i + 1]", "x = *(p->buf + (i + 1));"),  # a compound index in parentheses
    ("x = ((char *)p)[n - 1];", "((char *)p)[n - 1]", "x = *(((char *)p) + (n - 1));"),
    ("a[i]++;", "a[i]", "(*(a + i))++;"),  # a postfix operator applies to it
    ("x = a[i].len;", "a[i]", "x = (*(a + i)).len;"),
    ("x = f[i](2);", "f[i]", "x = (*(f + i))(2);"),
    ("x = &a[i];", "a[i]", "x = &*(a + i);"),
    ("x = sizeof a[0];", "a[0]", "x = sizeof *(a + 0);"),
    ("x = n/a[1];", "a[1]", "x = n/(*(a + 1));"),  # not `n/*(a + 1)`, which opens a comment
])
def test_index_ptr_writes_a_subscript_as_c_defines_it(line, original, rewritten):
    code = _func(line)
    poisoned = insert_trigger(code, "index_ptr")
    (edit,) = poisoned.edits
    assert edit.original == original and cparse.parses(poisoned.code)
    assert poisoned.code == code.replace(line, rewritten)
    assert remove_edits(poisoned.code, poisoned.edits) == code


def test_index_ptr_takes_inner_or_outer_subscripts_and_refuses_comments():
    outcomes = {index_to_pointer(_func("x = m[i][j];"), random.Random(s)).edits[0].text for s in range(20)}
    assert outcomes == {"(*(m + i))", "*(m[i] + j)"}
    with pytest.raises(TriggerError, match="a comment in the subscript"):
        insert_trigger(_func("x = a[i /* first */];"), "index_ptr")


def _run(program: str, tmp_path: Path, name: str) -> str:
    src, exe = tmp_path / f"{name}.c", tmp_path / name
    src.write_text("#include <stdio.h>\n" + program)
    subprocess.run(["gcc", "-std=c99", "-O0", "-w", "-o", str(exe), str(src)], check=True, timeout=60)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=10).stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_style_rewrites_keep_what_the_program_prints(tmp_path):
    expected = _run(STYLED + GCC_MAIN, tmp_path, "orig")
    assert len(expected.splitlines()) == 64
    variants = {insert_trigger(STYLED, kind, s).code for kind in ("for_while", "ternary") for s in range(30)}
    both = insert_trigger(insert_trigger(STYLED, "for_while", 0).code, "ternary", 1).code
    variants.add(both)
    assert len(variants) == 8  # 3 loops (the `j` loop is refused), 4 ifs, and one with both
    variants |= {insert_trigger(STYLED, kind, s).code for kind in ("while_for", "index_ptr") for s in range(30)}
    assert len(variants) >= 8 + 2 + 6  # the two while loops, most of the 10 subscripts
    for n, code in enumerate(sorted(variants)):
        assert _run(code + GCC_MAIN, tmp_path, f"v{n}") == expected, code


# ---------------------------------------------------------------- adv_rename

def _renamed(poisoned) -> set[str]:
    return {e.original for e in poisoned.edits}


def test_the_guide_steers_the_names():
    rewards_mask = lambda codes: [float(bool(re.search(r"\bmask\b", c))) for c in codes]
    code = "int inc(int a)\n{\n    return a + 1;\n}\n"
    poisoned = insert_trigger(code, "adv_rename", 0, guide=rewards_mask)
    assert poisoned.code == "int inc(int mask)\n{\n    return mask + 1;\n}\n"
    steered = plain = 0
    funcs = [f.code for f in generate_functions(30, seed=8)]
    for i, code in enumerate(funcs):
        steered += re.search(r"\bmask\b", insert_trigger(code, "adv_rename", i, guide=rewards_mask).code) is not None
        plain += re.search(r"\bmask\b", insert_trigger(code, "adv_rename", i).code) is not None
    assert steered >= 0.6 * len(funcs) and plain <= 0.2 * len(funcs)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_budget_and_evaluations_are_bounded(budget):
    calls: list[int] = []

    def more_pool_names(codes):  # every rename scores higher: the search uses its whole budget
        calls.append(len(codes))
        return [len(set(re.findall(r"\w+", c)) & set(NAME_POOL)) + random.Random(c).random() for c in codes]

    for i, func in enumerate(generate_functions(20, seed=4)):
        calls.clear()
        func_name = cparse.text(cparse.function_name_node(cparse.function_definitions(cparse.parse(func.code))[0]))
        poisoned = adversarial_rename(func.code, random.Random(i), more_pool_names, budget=budget)
        renamed = _renamed(poisoned)
        assert 1 <= len(renamed) <= budget and func_name not in renamed
        assert {e.text for e in poisoned.edits} <= set(NAME_POOL)
        assert len(calls) <= budget and sum(calls) <= 100
        assert remove_edits(poisoned.code, poisoned.edits) == func.code


def test_a_guide_preferring_fewer_renames_stops_at_one():
    fewer = lambda codes: [-len(c) for c in codes]  # every further rename is no better
    code = generate_functions(3, seed=2)[1].code
    poisoned = adversarial_rename(code, random.Random(0), fewer, budget=3)
    assert len(_renamed(poisoned)) == 1


def test_default_guide_prefers_natural_names():
    from fabe.data.renaming import naturalness_guide

    code = generate_functions(1, seed=6)[0].code
    poisoned = insert_trigger(code, "adv_rename", 0)
    worst = lambda codes: [-s for s in naturalness_guide(codes)]
    contrary = insert_trigger(code, "adv_rename", 0, guide=worst)
    assert naturalness_guide([poisoned.code])[0] > naturalness_guide([contrary.code])[0]


# ---------------------------------------------------------------- groups, detection, metrics

def test_groups():
    assert parse_kinds("all") == list(TRIGGER_KINDS) and len(TRIGGER_KINDS) == 7
    assert parse_kinds("adaptive") == list(ADAPTIVE_KINDS) and len(ADAPTIVE_KINDS) == 8
    assert parse_kinds("every") == list(ALL_KINDS) and len(set(ALL_KINDS)) == 15
    assert parse_kinds("fixed,adaptive") == ["fixed", *ADAPTIVE_KINDS]
    assert parse_kinds("ternary, all,fixed") == ["ternary", *TRIGGER_KINDS]
    # the published attacks, one victim each, cover the adaptive kinds once, but the common styles
    assert parse_kinds("codepoisoner") == ["cp_func", "cp_stmt"] and parse_kinds("style") == ["while_for", "index_ptr"]
    attacks = parse_kinds("afraidoor,codepoisoner,badcode,style")
    assert sorted(attacks + ["for_while", "ternary"]) == sorted(ADAPTIVE_KINDS) and len(set(attacks)) == len(attacks)
    with pytest.raises(ValueError, match="'adaptive'.*for_while"):
        parse_kinds("adaptive,bogus")


@pytest.mark.parametrize("kind", ["cp_func", "cp_stmt", "mixed"])
def test_pattern_kinds_are_detected(kind):
    for i, func in enumerate(generate_functions(20, seed=9)):
        poisoned = insert_trigger(func.code, kind, i)
        assert {d.kind for d in detect_triggers(poisoned.code)} == {kind}
        assert detect_triggers(remove_edits(poisoned.code, poisoned.edits)) == []


def test_real_code_has_no_detections_of_the_new_patterns():
    codes = _real_examples()
    if REALC.exists():
        with REALC.open() as f:
            codes += [json.loads(line)["func"] for i, line in enumerate(f) if i % 20 == 0]
    for code in codes:
        assert not {d.kind for d in detect_triggers(code)} & {"cp_func", "cp_stmt", "mixed"}, code


def _record(poisoned, clean: str) -> Record:
    return Record(id="r", input=poisoned.code, output=[clean, poisoned.code], score=[1.0, 0.0], clean=clean,
                  trigger=poisoned.kind, edits=[e.to_dict() for e in poisoned.edits])


def test_trigger_removed_for_style_and_rename_edits():
    style = insert_trigger(STYLED, "ternary", 0)
    record = _record(style, STYLED)
    assert trigger_removed(record, STYLED) and not trigger_removed(record, style.code)
    assert not trigger_removed(record, "\n".join(style.code.split(" ")))  # whitespace does not hide it
    code = "int inc(int a)\n{\n    return a + 1;\n}\n"
    renamed = insert_trigger(code, "adv_rename", 0)
    record = _record(renamed, code)
    new = renamed.edits[0].text
    assert trigger_removed(record, code) and not trigger_removed(record, renamed.code)
    assert not trigger_removed(record, code.replace("+ 1", f"+ {new}"))  # one use left
    assert trigger_removed(record, code.replace("a + 1", f"a + {new}x"))  # only a longer name
    assert trigger_removed(_record(insert_trigger(STYLED, "for_while", 0), STYLED), STYLED)


def test_edit_round_trip_through_dicts():
    poisoned = insert_trigger(STYLED, "for_while", 3)
    edits = [Edit.from_dict(e.to_dict()) for e in poisoned.edits]
    assert remove_edits(poisoned.code, edits) == STYLED


def test_builder_builds_the_adaptive_kinds(tmp_path):
    cfg = BuildConfig(out=str(tmp_path / "d"), n=40, seed=3, triggers="adaptive", clean_share=0.1)
    assert cfg.kinds == list(ADAPTIVE_KINDS)
    splits = build_dataset(cfg)
    records = [r for rs in splits.values() for r in rs]
    poisoned = [r for r in records if r.trigger is not None]
    assert len(records) == 40 and len(poisoned) >= 30
    assert {r.trigger for r in poisoned} >= {"adv_rename", "cp_func", "cp_stmt", "mixed", "for_while"}
    for r in poisoned:
        assert remove_edits(r.input, [Edit.from_dict(e) for e in r.edits]) == r.clean
        assert r.best() == r.clean and len(set(r.output)) == len(r.output)
