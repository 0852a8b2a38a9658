"""Baseline input purifiers from the literature, to set FABE against: each deletes whole
block-level statements of a function that look out of place.

- `naturalness_purifier`, in the spirit of KillBadCode: an n-gram language model of clean
  code judges how unnatural each statement is in its function: the drop of the function's
  negative log-likelihood when the statement is deleted, per deleted token. The most
  unnatural statement is removed, again, while it beats a threshold calibrated on clean
  functions (the value that `quantile` of clean functions do not reach).
- `onion_purifier`, in the spirit of ONION: the same rule with a neural language model's
  perplexity (a Hugging Face causal LM through `causal_lm_nll`).

(Measured on generated functions: the drop of the *mean* NLL, ONION's word-level rule carried
over as is, removed 0-20% of statement triggers at 12% false changes; per deleted token it
removes most of them, so both purifiers use that.)

The n-gram model is `fabe.data.ngram.NgramLM` (why it is written in the project: there).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from fabe.data import cparse
from fabe.data.ngram import NgramLM


def statement_spans(code: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the statements directly inside the blocks of the
    first function, each widened to its whole line(s) when it stands on lines of its own,
    so deleting it leaves tidy code."""
    tree = cparse.parse(code)
    funcs = cparse.function_definitions(tree)
    if not funcs:
        return []
    offs = cparse.Offsets(code)
    spans = []
    for block in cparse.walk(funcs[0].child_by_field_name("body")):
        if block.type != "compound_statement":
            continue
        for stmt in block.named_children:
            if stmt.type == "comment":
                continue
            start, end = offs.char(stmt.start_byte), offs.char(stmt.end_byte)
            line_start = code.rfind("\n", 0, start) + 1
            line_end = code.find("\n", end)
            line_end = len(code) if line_end < 0 else line_end
            if not code[line_start:start].strip() and not code[end:line_end].strip():
                start, end = line_start, min(line_end + 1, len(code))
            spans.append((start, end))
    return spans


def without(code: str, span: tuple[int, int]) -> str:
    return code[:span[0]] + code[span[1]:]


Scorer = Callable[[Sequence[str]], list[tuple[float, int]]]  # (total NLL, tokens) of each text


def ngram_scorer(lm: NgramLM) -> Scorer:
    return lambda codes: [lm.nll(c) for c in codes]


def causal_lm_nll(model, tokenizer, batch_size: int = 8) -> Scorer:
    """(total NLL, tokens) of each text under a Hugging Face causal LM."""
    import copy

    import torch

    tokenizer = copy.copy(tokenizer)
    tokenizer.padding_side = "right"  # positions count from the text's first token

    from fabe.training.losses import IGNORE_INDEX, token_logprobs

    @torch.no_grad()
    def score(codes: Sequence[str]) -> list[tuple[float, int]]:
        out = []
        for start in range(0, len(codes), batch_size):
            enc = tokenizer(list(codes[start:start + batch_size]), return_tensors="pt", padding=True,
                            truncation=True).to(model.device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
            logp = token_logprobs(model(**enc).logits, labels)
            counts = (labels[:, 1:] != IGNORE_INDEX).sum(-1)
            out += list(zip((-logp.sum(-1)).tolist(), counts.tolist()))
        return out

    return score


class StatementPurifier:
    """Delete the most unnatural statement (largest NLL drop per deleted token) while that
    exceeds `threshold`, at most `max_removals` times."""

    def __init__(self, scorer: Scorer, threshold: float = 0.0, max_removals: int = 2):
        self.scorer = scorer
        self.threshold = threshold
        self.max_removals = max_removals
        self.calibration_gains: list[float] = []  # sorted best gains of the calibration functions

    def best_removal(self, code: str) -> tuple[float, str]:
        """(NLL drop per deleted token, code without the statement) of the most suspicious
        statement."""
        spans = statement_spans(code)
        if not spans:
            return -math.inf, code
        variants = [without(code, s) for s in spans]
        (base, n), *scores = self.scorer([code, *variants])
        gains = [(base - total) / max(n - m, 1) for total, m in scores]
        best = max(range(len(gains)), key=gains.__getitem__)
        return gains[best], variants[best]

    def purify(self, code: str) -> str:
        for _ in range(self.max_removals):
            gain, shorter = self.best_removal(code)
            if gain <= self.threshold:
                break
            code = shorter
        return code

    def calibrate(self, clean_codes: Sequence[str], quantile: float = 0.95) -> "StatementPurifier":
        """Set the threshold to the `quantile` of the best gains on clean functions, so about
        1 - quantile of clean functions lose a statement."""
        gains = self.calibration_gains = sorted(self.best_removal(c)[0] for c in clean_codes)
        self.threshold = gains[min(len(gains) - 1, int(quantile * len(gains)))]
        return self


def naturalness_purifier(clean_codes: Sequence[str], calibration: Sequence[str],
                         quantile: float = 0.95) -> StatementPurifier:
    """KillBadCode-style purifier: a trigram model of `clean_codes`, calibrated on others."""
    return StatementPurifier(ngram_scorer(NgramLM().fit(clean_codes))).calibrate(calibration, quantile)


def onion_purifier(scorer: Scorer, calibration: Sequence[str], quantile: float = 0.95) -> StatementPurifier:
    """ONION-style purifier over statements with the language model `scorer`."""
    return StatementPurifier(scorer).calibrate(calibration, quantile)
