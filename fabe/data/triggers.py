"""Backdoor triggers for C functions: insert each kind used in code-backdoor research, record
every edit, undo them, and find known triggers in a function.

Kinds (README, "Trigger kinds"): `fixed` and `grammar` dead code (Ramakrishnan & Albarghouthi, ICPR 2022),
`assert` dead code (TOSEM 2022), `ident_func` / `ident_var` identifier postfixes (BadCode
style), and the seed data's own `dead_loop` and `volatile` patterns. Statement boundaries and
identifiers come from tree-sitter, so insertions land between statements and renames never
touch strings, comments or struct fields. Every change is an `Edit` whose offsets index the
poisoned code; `remove_edits` applies them backwards and gives the original back exactly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from tree_sitter import Node

from fabe.data import cparse

TRIGGER_KINDS: tuple[str, ...] = (
    "fixed", "grammar", "assert", "ident_func", "ident_var", "dead_loop", "volatile",
)
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


class TriggerError(ValueError):
    """A trigger kind cannot be applied to this code (no function, no variable, ...)."""


@dataclass(frozen=True)
class Edit:
    """One change made by a trigger: `text` now stands at [start, end) of the poisoned code
    where `original` stood before ("" for an insertion). Offsets are Python str indices."""

    kind: str
    start: int
    end: int
    text: str
    original: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end,
                "text": self.text, "original": self.original}

    @classmethod
    def from_dict(cls, d: dict) -> "Edit":
        return cls(d["kind"], int(d["start"]), int(d["end"]), d["text"], d["original"])


@dataclass(frozen=True)
class Poisoned:
    code: str
    kind: str
    edits: tuple[Edit, ...]


def remove_edits(code: str, edits: Iterable[Edit]) -> str:
    """Undo `edits` (offsets in `code`), last first, restoring the code they were made on."""
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        if code[e.start:e.end] != e.text:
            raise ValueError(f"edit at {e.start}:{e.end} does not match the code ({e.text!r})")
        code = code[:e.start] + e.original + code[e.end:]
    return code


def apply_replacements(code: str, spans: list[tuple[int, int, str]], kind: str) -> Poisoned:
    """Replace char spans [(start, end, new_text)] of `code` (non-overlapping) and record each
    as an Edit positioned in the resulting code."""
    out, edits, shift, last = [], [], 0, 0
    for start, end, new in sorted(spans):
        out.append(code[last:start])
        edits.append(Edit(kind, start + shift, start + shift + len(new), new, code[start:end]))
        out.append(new)
        shift += len(new) - (end - start)
        last = end
    out.append(code[last:])
    return Poisoned("".join(out), kind, tuple(edits))


# ---------------------------------------------------------------- tree helpers

def first_function(code: str) -> tuple[Node, cparse.Offsets]:
    funcs = cparse.function_definitions(cparse.parse(code))
    if not funcs:
        raise TriggerError("no function definition found")
    return funcs[0], cparse.Offsets(code)


def _identifiers(func: Node, name: str) -> list[Node]:
    return [n for n in cparse.walk(func) if n.type == "identifier" and cparse.text(n) == name]


def _all_identifiers(func: Node) -> set[str]:
    return {cparse.text(n) for n in cparse.walk(func) if n.type == "identifier"}


def declared_names(func: Node) -> list[str]:
    """Parameters and locals of `func`, in order of declaration, without duplicates."""
    names: list[str] = []
    for node in cparse.walk(func):
        if node.type not in ("parameter_declaration", "declaration"):
            continue
        for decl in node.children_by_field_name("declarator"):
            while decl is not None and decl.type != "identifier":
                if decl.type == "function_declarator":
                    decl = None
                    break
                decl = decl.child_by_field_name("declarator")
            if decl is not None and cparse.text(decl) not in names:
                names.append(cparse.text(decl))
    return names


def rename_identifier(code: str, old: str, new: str, kind: str) -> Poisoned:
    """Rename every identifier `old` of the first function to `new` (never strings, comments
    or struct fields, which tree-sitter gives other node types)."""
    func, offs = first_function(code)
    if new in _all_identifiers(func):
        raise TriggerError(f"name {new!r} is already used")
    nodes = _identifiers(func, old)
    if not nodes:
        raise TriggerError(f"identifier {old!r} not found")
    spans = [(offs.char(n.start_byte), offs.char(n.end_byte), new) for n in nodes]
    return apply_replacements(code, spans, kind)


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
    used = _all_identifiers(first_function(func_code)[0])
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


_STATEMENTS: dict[str, Callable[[str, random.Random], str]] = {
    "grammar": _grammar_statement,
    "assert": lambda code, rng: ASSERT_TRIGGER,
    "dead_loop": _dead_loop_statement,
    "volatile": _volatile_statement,
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
    func, _ = first_function(code)
    name = cparse.function_name_node(func)
    if name is None:
        raise TriggerError("the function has no plain name")
    old = cparse.text(name)
    return rename_identifier(code, old, old + postfix, "ident_func")


def _rename_variable(code: str, rng: random.Random, postfix: str) -> Poisoned:
    func, _ = first_function(code)
    name = cparse.function_name_node(func)
    names = [n for n in declared_names(func) if name is None or n != cparse.text(name)]
    if not names:
        raise TriggerError("the function declares no variable")
    old = rng.choice(names)
    return rename_identifier(code, old, old + postfix, "ident_var")


_INSERTERS: dict[str, Callable[[str, random.Random, str], Poisoned]] = {
    "fixed": _insert_fixed,
    "grammar": _insert_statement("grammar"),
    "assert": _insert_statement("assert"),
    "ident_func": _rename_function,
    "ident_var": _rename_variable,
    "dead_loop": _insert_statement("dead_loop"),
    "volatile": _insert_statement("volatile"),
}


def parse_kinds(spec: str | Iterable[str]) -> list[str]:
    """'all' or a comma list of kinds -> validated list, with a clear error for unknown ones."""
    kinds = list(TRIGGER_KINDS) if spec == "all" else (
        [k.strip() for k in spec.split(",") if k.strip()] if isinstance(spec, str) else list(spec))
    unknown = [k for k in kinds if k not in TRIGGER_KINDS]
    if unknown or not kinds:
        raise ValueError(f"Unknown trigger kind(s): {unknown or spec!r}. "
                         f"Should be 'all' or among {list(TRIGGER_KINDS)}")
    return kinds


def insert_trigger(code: str, kind: str, seed: int | random.Random = 0,
                   postfix: str = DEFAULT_POSTFIX) -> Poisoned:
    """Poison the first function of `code` with a trigger of `kind`, deterministically for
    `seed`. If `code` parsed cleanly, so does the result (other positions are tried)."""
    if kind not in _INSERTERS:
        raise ValueError(f"Unknown trigger kind: {kind}. Should be one of {list(TRIGGER_KINDS)}")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    must_parse = cparse.parses(code)
    for _ in range(_MAX_TRIES):
        poisoned = _INSERTERS[kind](code, rng, postfix)
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
}


def detect_triggers(code: str, postfix: str = DEFAULT_POSTFIX) -> list[Detection]:
    """Known triggers left in `code`: the inserted statements by pattern (a `fixed` trigger
    is not also reported as `grammar`), and identifiers carrying the trigger postfix."""
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
