"""Diverse beam search: the degenerate case equals transformers' beam search; a penalty
makes the groups differ; raw log-likelihoods match a teacher-forced forward."""

from __future__ import annotations

import pytest
import torch

from fabe.cleaning.decoding import diverse_beam_search


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():  # a sharper random model than the near-uniform init
        model.lm_head.weight.mul_(8.0)
    return model, tok


def _batch(tok, texts):
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(i) for i in ids)
    input_ids = torch.tensor([[tok.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    return input_ids, mask


TEXTS = ["static int f(int a)\n{\n    return a;", "void g(void)\n{\n    int n = 3;\n    h(n);\n}\n"]


@pytest.mark.parametrize("k", [2, 4])
def test_one_group_no_penalty_equals_generate(lm, k):
    model, tok = lm
    ids, mask = _batch(tok, TEXTS)
    ref = model.generate(input_ids=ids, attention_mask=mask, num_beams=k, num_return_sequences=k,
                         max_new_tokens=12, do_sample=False, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    out = diverse_beam_search(model, ids, mask, num_beams=k, num_beam_groups=1, diversity_penalty=0.0,
                              max_new_tokens=12, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    expected = ref.sequences[:, ids.shape[1]:].view(len(TEXTS), k, -1)
    assert torch.equal(out.sequences, expected)
    assert torch.allclose(out.scores, ref.sequences_scores.view(len(TEXTS), k), atol=1e-5)


def test_eos_ends_hypotheses_like_generate(lm):
    model, tok = lm
    ids, mask = _batch(tok, TEXTS)
    with torch.no_grad():  # make eos compete with the favourite token, so some beams end early
        greedy = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                                pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
        favourite = torch.mode(greedy.flatten()).values
        saved = model.lm_head.weight[tok.eos_token_id].clone()
        model.lm_head.weight[tok.eos_token_id] = model.lm_head.weight[favourite] * 1.001
    ref = model.generate(input_ids=ids, attention_mask=mask, num_beams=3, num_return_sequences=3,
                         max_new_tokens=30, do_sample=False, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    out = diverse_beam_search(model, ids, mask, num_beams=3, num_beam_groups=1, diversity_penalty=0.0,
                              max_new_tokens=30, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    expected = ref.sequences[:, ids.shape[1]:].reshape(len(TEXTS), 3, -1)
    assert out.finished.any() and (out.lengths < 30).any()  # the premise: some ended early
    for b in range(len(TEXTS)):
        for k in range(3):
            n = int(out.lengths[b, k])
            assert torch.equal(out.sequences[b, k, :n], expected[b, k, :n])
            # after the end: our pad; transformers fills with eos when pad_token_id is 0
            assert set(expected[b, k, n:].tolist()) <= {tok.pad_token_id, tok.eos_token_id}
    assert torch.allclose(out.scores, ref.sequences_scores.view(len(TEXTS), 3), atol=1e-5)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] = saved


def test_a_positive_penalty_gives_distinct_candidates(lm):
    model, tok = lm
    ids, mask = _batch(tok, TEXTS)
    plain = diverse_beam_search(model, ids, mask, num_beams=4, num_beam_groups=4, diversity_penalty=0.0,
                                max_new_tokens=8, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    assert all(len({tuple(s) for s in plain.sequences[b].tolist()}) == 1 for b in range(2))  # groups of 1, no penalty: 4 greedy copies
    diverse = diverse_beam_search(model, ids, mask, num_beams=4, num_beam_groups=4, diversity_penalty=50.0,
                                  max_new_tokens=8, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    for b in range(2):
        assert len({tuple(s) for s in diverse.sequences[b].tolist()}) == 4
        assert len(set(diverse.sequences[b, :, 0].tolist())) == 4  # a penalty this large splits the first token


def test_raw_logprobs_match_a_teacher_forced_forward(lm):
    model, tok = lm
    ids, mask = _batch(tok, TEXTS[:1])
    out = diverse_beam_search(model, ids, mask, num_beams=2, num_beam_groups=2, diversity_penalty=2.0,
                              max_new_tokens=6, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    for k in range(2):
        seq = out.sequences[0, k, : out.lengths[0, k]]
        full = torch.cat([ids[0], seq])[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0, :-1].float(), -1)
        n = ids.shape[1]
        expected = logp[n - 1:, :].gather(1, seq[:, None]).sum()
        assert out.logprobs[0, k].item() == pytest.approx(expected.item(), abs=1e-3)


def test_groups_must_divide_beams(lm):
    model, tok = lm
    ids, mask = _batch(tok, TEXTS[:1])
    with pytest.raises(ValueError, match="multiple of num_beam_groups"):
        diverse_beam_search(model, ids, mask, num_beams=4, num_beam_groups=3, diversity_penalty=1.0,
                            max_new_tokens=2, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
