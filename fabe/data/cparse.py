"""Parsing C with tree-sitter: one cached parser and the few tree queries the project needs.

Every module that looks at C structure (corpus loaders, triggers, later the cleaner's
`parses` check) goes through here, so byte/char offset handling lives in one place.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import tree_sitter_c
from tree_sitter import Language, Node, Parser, Tree


@lru_cache(maxsize=1)
def c_language() -> Language:
    return Language(tree_sitter_c.language())


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(c_language())


def parse(code: str) -> Tree:
    """Parse C source (a whole file or a single function)."""
    return _parser().parse(code.encode("utf-8"))


def parses(code: str) -> bool:
    """True when tree-sitter finds no ERROR or MISSING node in `code`."""
    return bool(code.strip()) and not parse(code).root_node.has_error


def walk(node: Node) -> Iterator[Node]:
    """All nodes under `node` (itself included), in document order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def text(node: Node) -> str:
    return node.text.decode("utf-8", errors="replace") if node.text is not None else ""


def function_definitions(tree: Tree) -> list[Node]:
    """Top-level `function_definition` nodes (what Devign calls a function)."""
    return [n for n in tree.root_node.children if n.type == "function_definition"]


def function_name_node(func: Node) -> Node | None:
    """The identifier naming a function_definition, through pointer declarators."""
    declarator = func.child_by_field_name("declarator")
    while declarator is not None and declarator.type != "function_declarator":
        declarator = declarator.child_by_field_name("declarator")
    if declarator is None:
        return None
    name = declarator.child_by_field_name("declarator")
    return name if name is not None and name.type == "identifier" else None


class Offsets:
    """Maps tree-sitter byte offsets of one source string to Python str indices."""

    def __init__(self, code: str):
        self._ascii = code.isascii()
        self._prefix: list[int] = []
        if not self._ascii:
            pos = 0
            for ch in code:
                self._prefix.extend([pos] * len(ch.encode("utf-8")))
                pos += 1
            self._prefix.append(pos)

    def char(self, byte_offset: int) -> int:
        return byte_offset if self._ascii else self._prefix[byte_offset]
