"""The `adv_rename` trigger: adversarial identifier renaming in the AFRAIDOOR manner (Yang et
al., TSE 2024). Each poisoned function gets its own trigger: a few of its parameters and
locals renamed to the plausible names that a guide scores highest.

The guide scores whole poisoned codes, higher = preferred by the attacker; a caller passes
e.g. a victim classifier's log-probability of the target label. Without one, the guide is
naturalness: minus the per-token negative log-likelihood under a trigram language model of
generated C functions, so the renames read as naturally as possible (the stealthy variant).

Cost: a greedy search of `budget` steps; each step scores, in one batched guide call, a seeded
sample of at most `max_evals // budget` (variable, name) pairs, and keeps the best one (after
the first step only if it raises the score). At the defaults (budget 2, max_evals 100) that is
at most 100 guide evaluations per function.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache

from fabe.data.edits import (
    Guide,
    Poisoned,
    TriggerError,
    first_function,
    rename_identifiers,
    variable_names,
)
from fabe.data.ngram import NgramLM

DEFAULT_BUDGET = 2
DEFAULT_MAX_EVALS = 100
LM_FUNCTIONS, LM_SEED = 1000, 20240  # the naturalness model's training functions (generated)
NAME_POOL: tuple[str, ...] = (
    "tmp", "buf", "len", "ctx", "idx", "val", "ptr", "res", "cnt", "size", "node", "item",
    "count", "data", "result", "value", "pos", "offset", "key", "str", "out", "flags", "index",
    "total", "entry", "cur", "src", "dst", "err", "rc", "ret", "num", "info", "state", "elem",
    "off", "base", "arg", "msg", "head", "tail", "next", "prev", "start", "end", "limit", "mask",
)


@lru_cache(maxsize=1)
def naturalness_lm() -> NgramLM:
    """The trigram model of the default guide, fit once (about a second) on generated code."""
    from fabe.data.generator import generate_functions

    return NgramLM().fit(f.code for f in generate_functions(LM_FUNCTIONS, seed=LM_SEED))


def naturalness_guide(codes: Sequence[str]) -> list[float]:
    """Minus the negative log-likelihood per token of each code: higher reads more naturally."""
    lm = naturalness_lm()
    return [-total / max(tokens, 1) for total, tokens in map(lm.nll, codes)]


def adversarial_rename(code: str, rng: random.Random, guide: Guide | None = None,
                       budget: int = DEFAULT_BUDGET, max_evals: int = DEFAULT_MAX_EVALS) -> Poisoned:
    """Rename at most `budget` parameters or locals of the first function (never its name) to
    unused names of `NAME_POOL`, greedily maximizing `guide` (None: `naturalness_guide`);
    at most about `max_evals` guide evaluations, deterministic for `rng`'s state."""
    if budget < 1 or max_evals < 1:
        raise ValueError(f"budget and max_evals must be positive, got {budget}, {max_evals}")
    score = guide or naturalness_guide
    targets = variable_names(first_function(code)[0])
    used = set(re.findall(r"\w+", code))  # strings and comments too: the new names must be new
    names = [n for n in NAME_POOL if n not in used]
    if not names:
        raise TriggerError("no unused candidate name")
    mapping: dict[str, str] = {}
    best: float | None = None
    for _ in range(min(budget, len(targets))):
        pairs = [(v, n) for v in targets if v not in mapping for n in names if n not in mapping.values()]
        if not pairs:
            break
        tried = rng.sample(pairs, min(len(pairs), max(1, max_evals // budget)))
        scores = score([rename_identifiers(code, {**mapping, v: n}, "adv_rename").code for v, n in tried])
        if len(scores) != len(tried):
            raise ValueError(f"guide: returned {len(scores)} scores for {len(tried)} codes")
        i = max(range(len(tried)), key=scores.__getitem__)
        if best is not None and scores[i] <= best:
            break
        mapping[tried[i][0]], best = tried[i][1], scores[i]
    return rename_identifiers(code, mapping, "adv_rename")
