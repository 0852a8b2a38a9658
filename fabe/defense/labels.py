"""Labels of a victim's task. A corpus may bring its own (Devign's and CodeXGLUE's `target`, the
generated corpus's documented rule); real functions without labels get one computed from the
code by a documented rule, so clean accuracy and ASR can be measured on real code.

- `corpus`: the corpus's `target` field (an error names the first function without one).
- `memory`: 1 when the function calls a memory allocation, release or copy routine (a callee
  whose name contains alloc, free, memcpy/memmove/memset/memdup, strcpy/strncpy/strcat/strncat
  or strdup/strndup, e.g. `malloc`, `xrealloc`, `g_free`, `av_mallocz`), else 0: the memory
  handling a defect detector looks at first. It is 1 on 26% of the real functions of the 16
  development projects (5% of lua's to 57% of jq's). None of the trigger kinds adds or
  removes such a call, so a function's label is the same with and without its trigger.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from fabe.data import cparse
from fabe.data.corpus import CFunction
from fabe.registry import Registry

_MEMORY_CALL = re.compile(r"alloc|free|mem(?:cpy|move|set|dup)|str(?:n)?(?:cpy|cat|dup)", re.IGNORECASE)


def callees(code: str) -> list[str]:
    """Names of the functions `code` calls directly (`f(...)`, `obj->f(...)` gives `f`)."""
    names = []
    for node in cparse.walk(cparse.parse(code).root_node):
        if node.type != "call_expression":
            continue
        fn = node.child_by_field_name("function")
        while fn is not None and fn.type == "field_expression":
            fn = fn.child_by_field_name("field")
        if fn is not None and fn.type in ("identifier", "field_identifier"):
            names.append(cparse.text(fn))
    return names


def memory_label(code: str) -> int:
    return int(any(_MEMORY_CALL.search(name) for name in callees(code)))


LABEL_RULES: Registry[Callable[[str], int] | None] = Registry("label rule", {
    "corpus": None,  # the corpus's own target
    "memory": memory_label,
})


def labels_of(funcs: Sequence[CFunction], rule: str, corpus: str) -> list[int]:
    """Each function's label by `rule`; the corpus's `target` must then be 0 or 1 everywhere."""
    compute = LABEL_RULES[rule]
    if compute is not None:
        return [compute(f.code) for f in funcs]
    missing = next((f for f in funcs if f.target not in (0, 1)), None)
    if missing is not None:
        raise ValueError(f"{corpus}: function {missing.idx}: target: the victim needs a 0/1 label on every "
                         f"function (got {missing.target!r}); give a corpus with labels or a computed rule "
                         f"(--label memory)")
    return [int(f.target) for f in funcs]
