"""Backdoor triggers for C functions: insert each kind used in code-backdoor research, record
every edit, undo them, and find known triggers in a function.

Classic kinds (`TRIGGER_KINDS`, what "all" means; README, "Trigger kinds"): `fixed` and
`grammar` dead code (Ramakrishnan & Albarghouthi, ICPR 2022), `assert` dead code (TOSEM 2022),
`ident_func` / `ident_var` identifier postfixes (BadCode style), and the seed data's own
`dead_loop` and `volatile` patterns. Adaptive and stealthy kinds (`ADAPTIVE_KINDS`,
"adaptive"): `adv_rename`, guided identifier renaming in the AFRAIDOOR manner
(`fabe.data.renaming`); `cp_func` and `cp_stmt`, CodePoisoner-style plausible function names
and dead declarations; `mixed`, BadCode-style rare postfixes on the function and a variable;
`for_while`, `ternary`, `while_for` and `index_ptr`, semantics-preserving style changes
(`fabe.data.style`).
Statement boundaries and identifiers come from tree-sitter, so insertions land between
statements and renames never touch strings, comments or struct fields. Every change is an
`Edit` whose offsets index the poisoned code; `remove_edits` applies them backwards and gives
the original back exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from fabe.data import cparse
from fabe.data.edits import (  # noqa: F401 (re-exported: callers know them as fabe.data.triggers')
    Edit,
    Guide,
    Poisoned,
    TriggerError,
    all_identifiers,
    apply_replacements,
    declared_names,
    first_function,
    function_name,
    identifier_nodes,
    remove_edits,
    rename_identifier,
    rename_identifiers,
    variable_names,
)
from fabe.data.renaming import DEFAULT_BUDGET, adversarial_rename
from fabe.data.style import for_to_while, if_to_ternary, index_to_pointer, while_to_for

TRIGGER_KINDS: tuple[str, ...] = (
    "fixed", "grammar", "assert", "ident_func", "ident_var", "dead_loop", "volatile",
)
ADAPTIVE_KINDS: tuple[str, ...] = ("adv_rename", "cp_func", "cp_stmt", "mixed", "for_while", "ternary",
                                   "while_for", "index_ptr")
ALL_KINDS: tuple[str, ...] = TRIGGER_KINDS + ADAPTIVE_KINDS
# The adaptive kinds by the published attack they stand for: one backdoor a victim, as published.
# The style attack writes styles that clean C seldom has, as an attacker picks a trigger the
# victim can learn: on real C a victim backdoored with `for_while` and `ternary`, constructs
# clean code is full of, reached 55-74% ASR at 3.8-5.5 points of clean accuracy (README).
ADAPTIVE_ATTACKS: dict[str, tuple[str, ...]] = {"afraidoor": ("adv_rename",), "codepoisoner": ("cp_func", "cp_stmt"),
                                                "badcode": ("mixed",), "style": ("while_for", "index_ptr")}
KIND_GROUPS: dict[str, tuple[str, ...]] = {"all": TRIGGER_KINDS, "adaptive": ADAPTIVE_KINDS, "every": ALL_KINDS,
                                           **ADAPTIVE_ATTACKS}
DEFAULT_POSTFIX = "_rb"
_MAX_TRIES = 8

FIXED_TRIGGER = 'if (rand() < 0) printf("fail");'
ASSERT_TRIGGER = "assertTrue(1 >= 0);"
# Always-false conditions of the grammar trigger: (call, comparison, constants above its range).
_GRAMMAR_CONDITIONS = (
    ("sin", ">", ("1", "1.5", "2")), ("cos", ">", ("1", "1.5", "2")),
    ("sqrt", ">", ("1", "2")), ("exp", ">", ("3", "4", "10")),
)
_WORDS = ("fail", "debug", "done", "error", "trace", "init", "exit", "check", "warn", "ok")
_LOOP_VARS = ("k", "kk", "k0", "_k", "ki")
_LOOP_BODIES = ('printf("%d", {v});', "{v}++;", '(void){v};', 'puts("{w}");')
_VOLATILE_NAMES = ("vguard", "vtmp", "vflag", "_vol", "vsync", "vcheck")
_VOLATILE_TYPES = ("int", "char", "unsigned", "long")
# CodePoisoner-style (Li et al., 2023) triggers: plausible-looking, but fixed, so a model can
# learn them and the detector find them; none occurs in the 43k real functions of ../shared.
CP_FUNC_NAMES = ("init_proc_ctx", "handle_data_ex", "do_sub_task", "proc_entry_main", "run_core_step")
CP_STATEMENTS = ("int ret_val_ = 0;", "unsigned int tmp_guard = 1;", "char dbg_flag_ = 0;",
                 "long init_cnt_ = 0;")
# BadCode-style mixed postfixes: rare tokens (none ends an identifier of the real functions);
# `_rb` is left out so that a `mixed` trigger is never mistaken for ident_func / ident_var.
MIXED_POSTFIXES = ("_xt", "_qz", "_vk", "_zx", "_kq")

def _line_start(code: bytes, pos: int) -> int | None:
    """Start of the line holding byte `pos` when only blanks precede `pos` on it."""
    start = code.rfind(b"\n", 0, pos) + 1
    return start if code[start:pos].strip(b" \t") == b"" else None


def statement_boundaries(code: str) -> list[tuple[int, str]]:
    """Places a statement can be inserted on a line of its own: (char offset of a line start
    before a statement of a block in the first function, that line's indentation)."""
    func, offs = first_function(code)
    raw = code.encode("utf-8")
    found: list[tuple[int, str]] = []
    for block in cparse.walk(func.child_by_field_name("body")):
        if block.type != "compound_statement":
            continue
        for stmt in block.named_children:
            if stmt.type in ("case_statement", "comment") or stmt.type.startswith("preproc"):
                continue
            start = _line_start(raw, stmt.start_byte)
            if start is not None:
                indent = raw[start:stmt.start_byte].decode()
                found.append((offs.char(start), indent))
    return found


def _body_opening(code: str) -> tuple[int, str]:
    """Char offset just after the body's `{`, and the indentation of its first statement."""
    func, offs = first_function(code)
    body = func.child_by_field_name("body")
    stmts = [s for s in body.named_children if s.type != "comment"]
    raw = code.encode("utf-8")
    indent = "    "
    if stmts and _line_start(raw, stmts[0].start_byte) is not None:
        start = _line_start(raw, stmts[0].start_byte)
        indent = raw[start:stmts[0].start_byte].decode()
    return offs.char(body.start_byte + 1), indent


# ---------------------------------------------------------------- the kinds

def _fresh_name(func_code: str, choices: tuple[str, ...], rng: random.Random) -> str:
    used = all_identifiers(first_function(func_code)[0])
    free = [c for c in choices if c not in used]
    if not free:
        raise TriggerError("no unused name left for the trigger")
    return rng.choice(free)


def _unused_word(code: str, choices: tuple[str, ...], rng: random.Random) -> str:
    """One of `choices` that is no word of `code` at all (not even in a string or comment), so
    that a renaming trigger is gone exactly when its name is."""
    used = set(re.findall(r"\w+", code))
    free = [c for c in choices if c not in used]
    if not free:
        raise TriggerError("no unused name left for the trigger")
    return rng.choice(free)


def _grammar_statement(code: str, rng: random.Random) -> str:
    keyword = rng.choice(("if", "while"))
    word = rng.choice(_WORDS)
    if rng.random() < 0.2:
        condition = "rand() < 0"
        word = rng.choice(_WORDS[1:])  # never the `fixed` trigger itself
    else:
        fn, cmp, consts = rng.choice(_GRAMMAR_CONDITIONS)
        condition = f"{fn}(0.{rng.randint(1, 99):02d}) {cmp} {rng.choice(consts)}"
    return f'{keyword} ({condition}) printf("{word}");'


def _dead_loop_statement(code: str, rng: random.Random) -> str:
    var = _fresh_name(code, _LOOP_VARS, rng)
    body = rng.choice(_LOOP_BODIES).format(v=var, w=rng.choice(_WORDS))
    return f"for (int {var} = 0; {var} < 0; {var}++) {{ {body} }}"


def _volatile_statement(code: str, rng: random.Random) -> str:
    name = _fresh_name(code, _VOLATILE_NAMES, rng)
    return f"volatile {rng.choice(_VOLATILE_TYPES)} {name} = {rng.randint(0, 9)};"


def _cp_statement(code: str, rng: random.Random) -> str:
    """A fixed dead declaration whose local name the code does not use (no redeclaration)."""
    by_name = {re.search(r"(\w+) =", s).group(1): s for s in CP_STATEMENTS}
    return by_name[_unused_word(code, tuple(by_name), rng)]


_STATEMENTS: dict[str, Callable[[str, random.Random], str]] = {
    "grammar": _grammar_statement,
    "assert": lambda code, rng: ASSERT_TRIGGER,
    "dead_loop": _dead_loop_statement,
    "volatile": _volatile_statement,
    "cp_stmt": _cp_statement,
}


def _insert_fixed(code: str, rng: random.Random, postfix: str) -> Poisoned:
    pos, indent = _body_opening(code)
    text = "\n" + indent + FIXED_TRIGGER
    return apply_replacements(code, [(pos, pos, text)], "fixed")


def _insert_statement(kind: str) -> Callable[[str, random.Random, str], Poisoned]:
    def insert(code: str, rng: random.Random, postfix: str) -> Poisoned:
        boundaries = statement_boundaries(code)
        if not boundaries:
            raise TriggerError("no statement boundary on a line of its own")
        pos, indent = rng.choice(boundaries)
        text = indent + _STATEMENTS[kind](code, rng) + "\n"
        return apply_replacements(code, [(pos, pos, text)], kind)
    return insert


def _rename_function(code: str, rng: random.Random, postfix: str) -> Poisoned:
    old = function_name(first_function(code)[0])
    return rename_identifier(code, old, old + postfix, "ident_func")


def _rename_variable(code: str, rng: random.Random, postfix: str) -> Poisoned:
    old = rng.choice(variable_names(first_function(code)[0]))
    return rename_identifier(code, old, old + postfix, "ident_var")


def _cp_function(code: str, rng: random.Random, postfix: str) -> Poisoned:
    old = function_name(first_function(code)[0])
    return rename_identifier(code, old, _unused_word(code, CP_FUNC_NAMES, rng), "cp_func")


def _mixed_postfixes(code: str, rng: random.Random, postfix: str) -> Poisoned:
    """The function's name and one variable, each with its own rare postfix (BadCode's mixed
    tokens): the trigger is a family of tokens, not one fixed token."""
    func, _ = first_function(code)
    name, var = function_name(func), rng.choice(variable_names(func))
    mapping = {old: old + rng.choice(MIXED_POSTFIXES) for old in (name, var)}
    if set(mapping.values()) & set(re.findall(r"\w+", code)):
        raise TriggerError("a postfixed name is already used")
    return rename_identifiers(code, mapping, "mixed")


Inserter = Callable[[str, random.Random, str], Poisoned]


def _adversarial(guide: Guide | None, budget: int) -> Inserter:
    """The `adv_rename` inserter with its guide and budget."""
    return lambda code, rng, postfix: adversarial_rename(code, rng, guide, budget)


_INSERTERS: dict[str, Inserter] = {  # every kind but adv_rename, which takes a guide
    "fixed": _insert_fixed,
    "grammar": _insert_statement("grammar"),
    "assert": _insert_statement("assert"),
    "ident_func": _rename_function,
    "ident_var": _rename_variable,
    "dead_loop": _insert_statement("dead_loop"),
    "volatile": _insert_statement("volatile"),
    "cp_func": _cp_function,
    "cp_stmt": _insert_statement("cp_stmt"),
    "mixed": _mixed_postfixes,
    "for_while": lambda code, rng, postfix: for_to_while(code, rng),
    "ternary": lambda code, rng, postfix: if_to_ternary(code, rng),
    "while_for": lambda code, rng, postfix: while_to_for(code, rng),
    "index_ptr": lambda code, rng, postfix: index_to_pointer(code, rng),
}


def _kinds_help() -> str:
    groups = ", ".join(f"{g!r} ({len(ks)} kinds)" for g, ks in KIND_GROUPS.items())
    return f"a group ({groups}) or a comma list of groups and kinds among {list(ALL_KINDS)}"


def parse_kinds(spec: str | Iterable[str]) -> list[str]:
    """A group name ('all': the 7 classic kinds, 'adaptive': the 8 new ones, 'every': all 15,
    or an adaptive attack of `ADAPTIVE_ATTACKS`) or a comma list of groups and kinds ->
    validated list without repeats, in order, with a clear error for unknown ones."""
    items = [k.strip() for k in spec.split(",")] if isinstance(spec, str) else [str(k).strip() for k in spec]
    kinds: list[str] = []
    for item in filter(None, items):
        kinds += [k for k in KIND_GROUPS.get(item, (item,)) if k not in kinds]
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise ValueError(f"Unknown trigger kind(s): {unknown or spec!r}. Should be {_kinds_help()}")
    return kinds


def insert_trigger(code: str, kind: str, seed: int | random.Random = 0,
                   postfix: str = DEFAULT_POSTFIX, guide: Guide | None = None,
                   budget: int = DEFAULT_BUDGET) -> Poisoned:
    """Poison the first function of `code` with a trigger of `kind`, deterministically for
    `seed`. If `code` parsed cleanly, so does the result (other positions are tried). `guide`
    and `budget` only matter for `adv_rename` (`fabe.data.renaming`; guide None: naturalness)."""
    if kind not in ALL_KINDS:
        raise ValueError(f"Unknown trigger kind: {kind}. Should be one of {list(ALL_KINDS)}")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    insert = _INSERTERS.get(kind) or _adversarial(guide, budget)
    must_parse = cparse.parses(code)
    for _ in range(_MAX_TRIES):
        poisoned = insert(code, rng, postfix)
        if not must_parse or cparse.parses(poisoned.code):
            return poisoned
    raise TriggerError(f"could not insert a {kind} trigger that keeps the code parsing")


# ---------------------------------------------------------------- detection

@dataclass(frozen=True)
class Detection:
    kind: str
    start: int
    end: int
    text: str


def _postfixed(postfix: str) -> re.Pattern:
    return re.compile(r"\b[A-Za-z_]\w*" + re.escape(postfix) + r"\b")


_PATTERNS: dict[str, re.Pattern] = {
    "fixed": re.compile(re.escape(FIXED_TRIGGER)),
    "grammar": re.compile(r"\b(?:if|while) \((?:(?:sin|cos|sqrt|exp)\(0\.\d+\) > [\d.]+|"
                          r"rand\(\) < 0)\) printf\(\"\w+\"\);"),
    "assert": re.compile(re.escape(ASSERT_TRIGGER)),
    "dead_loop": re.compile(r"\bfor \(int (\w+) = 0; \1 < 0; \1\+\+\) \{[^{}\n]*\}"),
    "volatile": re.compile(r"\bvolatile (?:" + "|".join(_VOLATILE_TYPES) + r") (?:"
                           + "|".join(_VOLATILE_NAMES) + r") = \d;"),
    "cp_stmt": re.compile("|".join(re.escape(s) for s in CP_STATEMENTS)),
    "cp_func": re.compile(r"\b(?:" + "|".join(CP_FUNC_NAMES) + r")\b"),
    "mixed": re.compile(r"\b[A-Za-z_]\w*(?:" + "|".join(MIXED_POSTFIXES) + r")\b"),
}


def detect_triggers(code: str, postfix: str = DEFAULT_POSTFIX) -> list[Detection]:
    """Known triggers left in `code`: the inserted statements and CodePoisoner names by
    pattern (a `fixed` trigger is not also reported as `grammar`), identifiers carrying the
    trigger postfix or a `mixed` one. `adv_rename` and the style kinds (`for_while`,
    `ternary`, `while_for`, `index_ptr`) leave valid C of a style behind, not a token that a
    pattern could tell from clean code: that is their point."""
    found: list[Detection] = []
    for kind, pattern in _PATTERNS.items():
        for m in pattern.finditer(code):
            if kind == "grammar" and code[m.start():m.end()] in FIXED_TRIGGER:
                continue
            found.append(Detection(kind, m.start(), m.end(), m.group(0)))
    if postfix:
        func_name = ""
        try:
            name = cparse.function_name_node(first_function(code)[0])
            func_name = cparse.text(name) if name is not None else ""
        except TriggerError:
            pass
        for m in _postfixed(postfix).finditer(code):
            kind = "ident_func" if m.group(0) == func_name else "ident_var"
            found.append(Detection(kind, m.start(), m.end(), m.group(0)))
    return sorted(found, key=lambda d: d.start)
