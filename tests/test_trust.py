"""Trust signals and the verdict: a cleaner that rewrote the function (the issue's parse_port
case) reads as failed, a restoration as confident; identical candidates are named; abstain
keeps the input."""

from __future__ import annotations

from fabe.cleaning.cleaner import rank_candidates
from fabe.cleaning.trust import assess, kept_share, mark_reference, signature
from fabe.data.triggers import insert_trigger

CLEAN = """static int parse_port(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*end != '\\0' || v < 1 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}"""
POISONED = insert_trigger(CLEAN, "fixed", 0).code
REWRITTEN = """static void parse_port(EHCIState *s, int *out)
{
    s->port = out;
    ehci_update(s
}"""


def test_the_signature_ignores_parameter_names_and_an_identifier_triggers_postfix():
    assert signature(CLEAN) == "static int parse_port(const char *, int *)"
    assert signature(insert_trigger(CLEAN, "ident_func", 0).code) == signature(CLEAN)
    assert signature(insert_trigger(CLEAN, "ident_var", 0).code) == signature(CLEAN)
    assert signature(REWRITTEN) != signature(CLEAN) and signature("not C at all") is None


def test_a_rewritten_function_reads_as_failed_and_abstaining_keeps_the_input():
    cands = rank_candidates([REWRITTEN, REWRITTEN + "\n", REWRITTEN.replace("port", "pt")], [-0.20, -0.21, -0.22],
                            [True] * 3, source=POISONED)
    assert all(not c.parses and c.keeps_signature is False and c.kept < 0.5 for c in cands)
    assert cands[1].same_as == 1 and cands[0].same_as is None and cands[2].same_as is None
    result = assess(POISONED, cands)
    assert result.verdict == "failed" and "no candidate parses" in result.reason and "signature" in result.reason
    assert not result.abstained and result.output == cands[0].code
    kept = assess(POISONED, cands, abstain=True)
    assert kept.abstained and kept.output == POISONED and "returned unchanged" in kept.reason


def test_a_restoration_reads_as_confident_and_matches_its_reference():
    cands = mark_reference(rank_candidates([CLEAN, POISONED], [-0.01, -3.0], [True, True], source=POISONED), CLEAN)
    assert cands[0].matches_reference and not cands[1].matches_reference and cands[1].is_input
    assert cands[0].keeps_signature and cands[0].kept == kept_share(POISONED, CLEAN) >= 0.9
    result = assess(POISONED, cands)
    assert result.verdict == "confident", result.reason


def test_a_top_candidate_that_keeps_the_trigger_or_a_close_call_is_uncertain():
    still = rank_candidates([POISONED, CLEAN], [-0.01, -3.0], [True, True], source=POISONED)
    assert assess(POISONED, still).verdict == "uncertain" and "fixed" in assess(POISONED, still).reason
    close = rank_candidates([CLEAN, CLEAN.replace("65535", "65536")], [-0.10, -0.11], [True, True], source=POISONED)
    result = assess(POISONED, close)
    assert result.verdict == "uncertain" and "weight" in result.reason
