"""What every trigger kind is made of: the `Edit` records of a change (so the original can be
restored exactly) and the tree-sitter helpers that find a function's names and rename them.
`fabe.data.triggers` builds the kinds on these, as do the guided renaming
(`fabe.data.renaming`) and the style rewrites (`fabe.data.style`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from tree_sitter import Node

from fabe.data import cparse

# Scores whole poisoned codes, higher = preferred by the attacker (fabe.data.renaming).
Guide = Callable[[Sequence[str]], list[float]]


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


def first_function(code: str) -> tuple[Node, cparse.Offsets]:
    funcs = cparse.function_definitions(cparse.parse(code))
    if not funcs:
        raise TriggerError("no function definition found")
    return funcs[0], cparse.Offsets(code)


def identifier_nodes(func: Node, name: str) -> list[Node]:
    return [n for n in cparse.walk(func) if n.type == "identifier" and cparse.text(n) == name]


def all_identifiers(func: Node) -> set[str]:
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
    if new in all_identifiers(func):
        raise TriggerError(f"name {new!r} is already used")
    nodes = identifier_nodes(func, old)
    if not nodes:
        raise TriggerError(f"identifier {old!r} not found")
    spans = [(offs.char(n.start_byte), offs.char(n.end_byte), new) for n in nodes]
    return apply_replacements(code, spans, kind)


def function_name(func: Node) -> str:
    name = cparse.function_name_node(func)
    if name is None:
        raise TriggerError("the function has no plain name")
    return cparse.text(name)


def variable_names(func: Node) -> list[str]:
    """Parameters and locals that a renaming trigger may take: never the function's name."""
    name = cparse.function_name_node(func)
    names = [n for n in declared_names(func) if name is None or n != cparse.text(name)]
    if not names:
        raise TriggerError("the function declares no variable")
    return names


def rename_identifiers(code: str, mapping: dict[str, str], kind: str) -> Poisoned:
    """Rename, at once, every identifier of the first function that `mapping` names (as
    `rename_identifier` does for one), with all edits positioned in the result."""
    func, offs = first_function(code)
    spans = [(offs.char(n.start_byte), offs.char(n.end_byte), mapping[cparse.text(n)])
             for n in cparse.walk(func) if n.type == "identifier" and cparse.text(n) in mapping]
    return apply_replacements(code, spans, kind)
