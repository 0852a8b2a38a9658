"""Baseline purifiers: statement spans, the n-gram model, and removal of a planted trigger
statement from a toy example while clean code is left alone."""

from __future__ import annotations

import math

import pytest

from fabe.data.generator import generate_functions
from fabe.data.ngram import NgramLM
from fabe.data.triggers import detect_triggers, insert_trigger
from fabe.defense.purifiers import naturalness_purifier, statement_spans, without

TOY = "int f(int a)\n{\n    int b = a + 1;\n    if (b > 2) {\n        b = 2;\n    }\n    return b;\n}"


def test_statement_spans_cover_whole_lines_of_every_block():
    spans = statement_spans(TOY)
    texts = [TOY[s:e] for s, e in spans]
    assert texts[0] == "    int b = a + 1;\n" and "        b = 2;\n" in texts and "    return b;\n" in texts
    assert without(TOY, spans[0]).splitlines()[2] == "    if (b > 2) {"


def test_the_ngram_model_is_a_distribution_and_prefers_seen_code():
    lm = NgramLM().fit([TOY] * 3)
    vocab = list(lm.uni)
    total = sum(math.exp(lm.logprob("{", "int", w)) for w in vocab)
    assert 0.9 < total <= 1.0  # the rest is left for unseen tokens
    seen, _ = lm.nll(TOY)
    odd, _ = lm.nll(TOY.replace("return b;", "return zz_unseen(b);"))
    assert seen < odd


@pytest.fixture(scope="module")
def clean_codes():
    return [f.code for f in generate_functions(900, seed=5)]


@pytest.mark.parametrize("kind", ["assert", "volatile"])
def test_the_naturalness_purifier_removes_a_planted_trigger_statement(clean_codes, kind):
    purifier = naturalness_purifier(clean_codes[:800], clean_codes[800:])
    for clean in [f.code for f in generate_functions(3, seed=1234)]:
        poisoned = insert_trigger(clean, kind, 0)
        gain, first = purifier.best_removal(poisoned.code)
        assert gain > purifier.threshold  # the trigger is the most unnatural statement ...
        assert " ".join(first.split()) == " ".join(clean.split())  # ... and is what goes
        assert not any(d.kind == kind for d in detect_triggers(purifier.purify(poisoned.code)))
    kept = sum(purifier.purify(c) == c for c in clean_codes[800:])
    assert kept >= 0.9 * 100  # calibrated: about 95% of clean functions are left alone


@pytest.mark.xfail(strict=True, reason="the cleaner retrained for real C (issue 14) is a poor language model of "
                   "bare generated code: the planted assert is the best removal in 1 of 8 functions (8 of 8 "
                   "with the cleaner of generated code); ONION needs a plain code LM")
def test_the_onion_purifier_removes_a_planted_trigger_statement(clean_codes):
    """ONION with the shipped cleaner's weights as its language model: in every poisoned function
    the planted assert is the statement whose removal helps most, and it stands out against the
    oddest statement of each of 40 clean functions (the calibration set of the defense): every
    planted gain above their 75th percentile, the typical one above their 90th. Where exactly
    the 95% threshold falls among a tiny LM's outliers varies with the weights, so it is not
    pinned here (the calibration itself is tested with the naturalness purifier)."""
    from fabe.embedded import SHIPPED_CLEANER

    if not (SHIPPED_CLEANER / "config.json").exists():
        pytest.skip("no embedded cleaner shipped (its weights are the ONION language model)")
    from fabe.cleaning.loading import load_trained
    from fabe.defense.purifiers import causal_lm_nll, onion_purifier

    model, tokenizer, _ = load_trained(str(SHIPPED_CLEANER))
    purifier = onion_purifier(causal_lm_nll(model, tokenizer), clean_codes[:40])
    clean_gains = purifier.calibration_gains
    assert purifier.threshold == clean_gains[38]
    planted = []
    for clean in [f.code for f in generate_functions(8, seed=4321)]:
        gain, first = purifier.best_removal(insert_trigger(clean, "assert", 0).code)
        assert " ".join(first.split()) == " ".join(clean.split())
        planted.append(gain)
    assert min(planted) > clean_gains[30] and sorted(planted)[4] > clean_gains[36], (planted, clean_gains)
