"""Style triggers: semantics-preserving rewrites of one construct of the first function, the
code-style triggers of stealthy backdoor research. They add no token that a pattern could
find; the trigger is the style itself.

`for_while`: a `for` loop becomes the equivalent `while` loop (init before it, update at the
end of its body). `ternary`: `if (c) x = a; else x = b;` becomes `x = (c) ? a : b;` and
`if (c) return a; else return b;` and `if (c) return a;` followed by `return b;` in the same
block become `return (c) ? a : b;`. Those two rewrite constructs that clean C is full of (a
while loop or a `?:` in 7% and 6% of real functions); the next two write a style that clean C
seldom has (0.7% and 0.1%), as an attacker picking a trigger the victim can tell apart would:
`while_for`: `while (c)` becomes `for (; c;)` (the header only; always the same loop);
`index_ptr`: a subscript `a[i]` becomes `*(a + i)` (what C defines it as). Each is one `Edit`
replacing the rewritten span (for the joined return form, from the `if` to the end of the
`return` after it), so `remove_edits` gives the original back exactly. Only rewrites that
keep the meaning are made; the checks say which are refused and why.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tree_sitter import Node

from fabe.data import cparse
from fabe.data.edits import (
    Poisoned,
    TriggerError,
    apply_replacements,
    declared_names,
    first_function,
)

_LOOPS = ("for_statement", "while_statement", "do_statement")
# Operands that need parentheses inside `c ? a : b` (lower precedence, or nested).
_LOW_PRECEDENCE = ("assignment_expression", "comma_expression", "conditional_expression")


# (statement, code bytes, function) -> new text for the statement, or (new text, end byte) when
# the replaced span runs on past the statement's end.
Rewrite = Callable[[Node, bytes, Node], "str | tuple[str, int]"]


def _rewrite_one(code: str, node_type: str, rewrite: Rewrite, kind: str, rng: random.Random) -> Poisoned:
    """Rewrite one randomly chosen `node_type` node of the first function's body that `rewrite`
    (node, code bytes, function) accepts; TriggerError naming why when none is."""
    func, offs = first_function(code)
    raw = code.encode("utf-8")
    done: list[tuple[Node, str | tuple[str, int]]] = []
    refused: set[str] = set()
    for node in cparse.walk(func.child_by_field_name("body")):
        if node.type != node_type:
            continue
        try:
            done.append((node, rewrite(node, raw, func)))
        except TriggerError as e:
            refused.add(str(e))
    if not done:
        why = f" ({'; '.join(sorted(refused))})" if refused else ""
        raise TriggerError(f"no {node_type.replace('_statement', ' statement').replace('_', ' ')} to rewrite{why}")
    node, text = rng.choice(done)
    text, end = text if isinstance(text, tuple) else (text, node.end_byte)
    return apply_replacements(code, [(offs.char(node.start_byte), offs.char(end), text)], kind)


def _src(raw: bytes, start: int, end: int) -> str:
    return raw[start:end].decode("utf-8")


def _indent_before(raw: bytes, pos: int) -> str | None:
    """The blanks before byte `pos` on its line, when only blanks precede it."""
    start = raw.rfind(b"\n", 0, pos) + 1
    blanks = raw[start:pos]
    return blanks.decode() if blanks.strip(b" \t") == b"" else None


def _has_comment(node: Node, before: int | None = None) -> bool:
    return any(n.type == "comment" and (before is None or n.start_byte < before) for n in cparse.walk(node))


def _own_continue(node: Node) -> bool:
    """A `continue` in `node` that belongs to the enclosing loop (not to a nested one)."""
    for child in node.children:
        if child.type == "continue_statement":
            return True
        if child.type not in _LOOPS and _own_continue(child):
            return True
    return False


def _identifiers(node: Node) -> set[str]:
    return {cparse.text(n) for n in cparse.walk(node) if n.type == "identifier"}


# ---------------------------------------------------------------- for -> while

def _while_loop(loop: Node, raw: bytes, func: Node) -> str:
    """The `while` statement (init before it) equivalent to `loop`, or TriggerError."""
    init, cond, update, body = (loop.child_by_field_name(f)
                                for f in ("initializer", "condition", "update", "body"))
    indent = _indent_before(raw, loop.start_byte)
    if loop.parent is None or loop.parent.type != "compound_statement" or indent is None:
        raise TriggerError("the loop is not a statement of its own line in a block")
    if _has_comment(loop, before=body.start_byte):
        raise TriggerError("a comment in the loop's header")
    if update is not None and _own_continue(body):
        raise TriggerError("a `continue` would skip the update")
    if init is not None and init.type == "declaration":
        outside = {cparse.text(n) for n in cparse.walk(func) if n.type == "identifier"
                   and not loop.start_byte <= n.start_byte < loop.end_byte}
        if set(declared_names(init)) & outside:
            raise TriggerError("the loop's variable is declared or used elsewhere (scope would change)")
    if update is not None and _identifiers(update) & set(declared_names(body)):
        raise TriggerError("the body declares a name that the update uses")
    head = ""
    if init is not None:
        head = cparse.text(init) + ("" if init.type == "declaration" else ";") + "\n" + indent
    rparen = [c for c in loop.children if c.type == ")" and c.end_byte <= body.start_byte][-1]
    gap = _src(raw, rparen.end_byte, body.start_byte)
    text = f"while ({cparse.text(cond) if cond is not None else '1'})"
    if update is None:
        return head + text + gap + cparse.text(body)
    step = cparse.text(update) + ";"
    if body.type != "compound_statement":
        if "\n" not in gap:
            return f"{head}{text} {{ {cparse.text(body)} {step} }}"
        inner = gap[gap.rfind("\n") + 1:]
        return f"{head}{text} {{{gap}{cparse.text(body)}\n{inner}{step}\n{indent}}}"
    close = body.end_byte - 1
    close_indent = _indent_before(raw, close)
    if close_indent is None:  # `{ ...; }` on one line
        inside = _src(raw, body.start_byte + 1, close).rstrip()
        return f"{head}{text}{gap}{{{inside} {step} }}"
    stmts = [s for s in body.named_children if s.type != "comment" and not s.type.startswith("preproc")]
    inner = _indent_before(raw, stmts[-1].start_byte) if stmts else None
    if inner is None:
        inner = close_indent + ("\t" if "\t" in close_indent else "    ")
    line = raw.rfind(b"\n", 0, close) + 1
    return f"{head}{text}{gap}{_src(raw, body.start_byte, line)}{inner}{step}\n{_src(raw, line, body.end_byte)}"


def for_to_while(code: str, rng: random.Random) -> Poisoned:
    """One `for` loop of the first function as the equivalent `while` loop (`for (;;)` ->
    `while (1)`). Refused: a `continue` of the loop itself with an update (it would skip
    the update), a declared loop variable whose name occurs elsewhere in the function (its
    scope grows to the enclosing block), a body declaring a name the update uses, a loop
    that is not a statement of a block (an init before it would leave the `if` it is under)."""
    return _rewrite_one(code, "for_statement", _while_loop, "for_while", rng)


# ---------------------------------------------------------------- if/else -> ?:

def _only_statement(node: Node) -> Node:
    """A branch's statement, through braces holding exactly one."""
    if node.type == "compound_statement":
        if len(node.named_children) != 1:
            raise TriggerError("a branch is not a single statement")
        node = node.named_children[0]
    return node


def _operand(node: Node) -> str:
    text = cparse.text(node)
    return f"({text})" if node.type in _LOW_PRECEDENCE else text


def _assignment(stmt: Node) -> tuple[str, Node] | None:
    """(left-hand side, right-hand side) of a plain `x = e;` statement."""
    if stmt.type != "expression_statement" or stmt.named_child_count != 1:
        return None
    expr = stmt.named_children[0]
    op = expr.child_by_field_name("operator")
    if expr.type != "assignment_expression" or op is None or cparse.text(op) != "=":
        return None
    return " ".join(cparse.text(expr.child_by_field_name("left")).split()), expr.child_by_field_name("right")


def _return_after(node: Node, raw: bytes, then: Node) -> tuple[str, int]:
    """`if (c) return a;` (no else) then `return b;` in the same block as `return (c) ? a : b;`,
    with the end of that `return`; TriggerError when it is not that shape."""
    a = then.named_children[0] if then.type == "compound_statement" and then.named_child_count == 1 else then
    if a.type != "return_statement":
        raise TriggerError("no else branch")
    nxt = node.next_named_sibling
    if node.parent is None or node.parent.type != "compound_statement" or nxt is None:
        raise TriggerError("an if without else is not followed by a return in its block")
    if nxt.type == "comment" or nxt.type.startswith("preproc") or raw[node.end_byte:nxt.start_byte].strip():
        raise TriggerError("a comment or preprocessor line between the if and the return")
    if nxt.type != "return_statement":
        raise TriggerError("an if without else is not followed by a return in its block")
    if _has_comment(node) or _has_comment(nxt):
        raise TriggerError("a comment in the if statement")
    if a.named_child_count != 1 or nxt.named_child_count != 1:
        raise TriggerError("a return without a value")
    c = cparse.text(node.child_by_field_name("condition"))
    return f"return {c} ? {_operand(a.named_children[0])} : {_operand(nxt.named_children[0])};", nxt.end_byte


def _conditional(node: Node, raw: bytes, func: Node) -> str | tuple[str, int]:
    """The `?:` statement equivalent to an if/else of `node` (or to an if without else and the
    `return` after it, with that return's end), or TriggerError."""
    cond, then, alt = (node.child_by_field_name(f) for f in ("condition", "consequence", "alternative"))
    if alt is None:
        return _return_after(node, raw, then)
    if alt.named_child_count != 1:
        raise TriggerError("no else branch")
    if _has_comment(node):
        raise TriggerError("a comment in the if statement")
    a, b = _only_statement(then), _only_statement(alt.named_children[0])
    c = cparse.text(cond)
    if a.type == b.type == "return_statement" and a.named_child_count == b.named_child_count == 1:
        return f"return {c} ? {_operand(a.named_children[0])} : {_operand(b.named_children[0])};"
    left_a, left_b = _assignment(a), _assignment(b)
    if left_a and left_b and left_a[0] == left_b[0]:
        return f"{left_a[0]} = {c} ? {_operand(left_a[1])} : {_operand(left_b[1])};"
    raise TriggerError("the branches are not one assignment to the same target, nor two returns")


def if_to_ternary(code: str, rng: random.Random) -> Poisoned:
    """One `if (c) x = a; else x = b;` (branches braced or not, one statement each, the same
    target, plain `=`) as `x = (c) ? a : b;`, or `if (c) return a; else return b;` as
    `return (c) ? a : b;`, or `if (c) return a;` (no else) directly followed in its block by
    `return b;` as `return (c) ? a : b;` (the edit spans both; refused: a bare `return;`, a
    comment or preprocessor line between or in them)."""
    return _rewrite_one(code, "if_statement", _conditional, "ternary", rng)


# ---------------------------------------------------------------- while -> for (; c;)

def _for_header(loop: Node, raw: bytes, func: Node) -> tuple[str, int]:
    """`for (; c;)` for the header `while (c)` of `loop`, with the header's end."""
    cond = loop.child_by_field_name("condition")
    if cond is None or cond.type != "parenthesized_expression":
        raise TriggerError("a condition not in parentheses")
    inner = _src(raw, cond.start_byte + 1, cond.end_byte - 1)
    if not inner.strip():
        raise TriggerError("an empty condition")
    return f"for (; {inner.strip()};)", cond.end_byte


def while_to_for(code: str, rng: random.Random) -> Poisoned:
    """The header `while (c)` of one `while` loop of the first function as `for (; c;)`: the
    same loop in every case (a `continue` goes to the condition in both), so nothing is
    refused; the body stays as it is."""
    return _rewrite_one(code, "while_statement", _for_header, "while_for", rng)


# ---------------------------------------------------------------- a[i] -> *(a + i)

# Operands that read the same as the left operand of `+` (postfix and primary expressions, and
# every `*_literal`).
_TIGHT = ("identifier", "field_expression", "call_expression", "subscript_expression", "parenthesized_expression")


def _tight(node: Node) -> str:
    text = cparse.text(node)
    return text if node.type in _TIGHT or node.type.endswith("_literal") else f"({text})"


def _operated_on(node: Node) -> bool:
    """Whether a postfix operator, a member access or a call applies to `node` (`a[i].x`,
    `a[i][j]`, `a[i]++`, `a[i](x)`), where `*(a + i)` needs parentheses of its own."""
    parent = node.parent
    return parent is not None and any(parent.child_by_field_name(f) == node for f in ("argument", "function")) \
        and parent.type in ("field_expression", "subscript_expression", "update_expression", "call_expression")


def _dereference(node: Node, raw: bytes, func: Node) -> str:
    """`*(a + i)` for the subscript `a[i]`, parenthesized where the context needs it."""
    array, index = node.child_by_field_name("argument"), node.child_by_field_name("index")
    if array is None or index is None:
        raise TriggerError("a subscript without its array or index")
    if _has_comment(node):
        raise TriggerError("a comment in the subscript")
    text = f"*({_tight(array)} + {_tight(index)})"
    # `x/a[i]` must not become `x/*(a + i)`, the start of a comment
    return f"({text})" if _operated_on(node) or raw[node.start_byte - 1:node.start_byte] == b"/" else text


def index_to_pointer(code: str, rng: random.Random) -> Poisoned:
    """One subscript `a[i]` of the first function as `*(a + i)`, which is how C defines it
    (a compound index in parentheses, `*(a + (i - 1))`; a compound array too; the whole in
    parentheses under a postfix operator, a member access or a call, and right after a `/`).
    Refused: a comment inside."""
    return _rewrite_one(code, "subscript_expression", _dereference, "index_ptr", rng)
