"""A trigram language model of C code over tree-sitter tokens: the naturalness that the
KillBadCode-style purifier and detector, and the language-model-guided adaptive triggers,
judge code by.

Written here rather than taken from nltk (its Kneser-Ney scores about 16 ms per token) or KenLM
(a separately compiled estimator): interpolated absolute discounting, a few microseconds per
token.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable

from fabe.data import cparse

BOS, EOS = "<s>", "</s>"


def code_tokens(code: str) -> list[str]:
    """The leaf tokens of `code` as tree-sitter sees them (comments left out)."""
    return [cparse.text(n) for n in cparse.walk(cparse.parse(code).root_node)
            if n.child_count == 0 and n.type != "comment" and n.text]


class NgramLM:
    """Interpolated absolute-discounting trigram model over code tokens."""

    def __init__(self, discount: float = 0.75):
        self.d = discount
        self.tri: Counter = Counter()
        self.bi: Counter = Counter()
        self.uni: Counter = Counter()
        self.ctx2: Counter = Counter()
        self.ctx1: Counter = Counter()
        self.follow2: defaultdict = defaultdict(set)
        self.follow1: defaultdict = defaultdict(set)
        self.total = 0

    def fit(self, codes: Iterable[str]) -> "NgramLM":
        for code in codes:
            toks = [BOS, BOS, *code_tokens(code), EOS]
            for u, v, w in zip(toks, toks[1:], toks[2:]):
                self.tri[u, v, w] += 1
                self.ctx2[u, v] += 1
                self.follow2[u, v].add(w)
                self.bi[v, w] += 1
                self.ctx1[v] += 1
                self.follow1[v].add(w)
                self.uni[w] += 1
                self.total += 1
        return self

    def logprob(self, u: str, v: str, w: str) -> float:
        p = (self.uni[w] + 1) / (self.total + len(self.uni) + 1)  # add-one, room for unseen
        if self.ctx1[v]:
            p = (max(self.bi[v, w] - self.d, 0) + self.d * len(self.follow1[v]) * p) / self.ctx1[v]
        if self.ctx2[u, v]:
            p = (max(self.tri[u, v, w] - self.d, 0) + self.d * len(self.follow2[u, v]) * p) / self.ctx2[u, v]
        return math.log(p)

    def nll(self, code: str) -> tuple[float, int]:
        """(total negative log-probability, tokens) of `code`."""
        toks = [BOS, BOS, *code_tokens(code), EOS]
        return -sum(self.logprob(u, v, w) for u, v, w in zip(toks, toks[1:], toks[2:])), len(toks) - 2
