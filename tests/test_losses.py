"""The ranking and likelihood losses against brute-force and hand computations."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fabe.training.losses import (IGNORE_INDEX, listmle_loss, margin_loss, rank_loss_fn, sequence_scores,
                         token_logprobs)


def plackett_luce_nll(s: list[float], order: list[int]) -> float:
    """-log P(order | s) = -sum_k log( exp(s_pi(k)) / sum_{j>=k} exp(s_pi(j)) ), by hand."""
    total = 0.0
    for k in range(len(order)):
        rest = sum(math.exp(s[order[j]]) for j in range(k, len(order)))
        total -= math.log(math.exp(s[order[k]]) / rest)
    return total


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_listmle_equals_brute_force_plackett_luce(n):
    gen = torch.Generator().manual_seed(n)
    for _ in range(5):
        s = torch.randn(1, n, generator=gen, dtype=torch.float64)
        quality = torch.rand(1, n, generator=gen, dtype=torch.float64) * 1000
        order = sorted(range(n), key=lambda i: -quality[0, i].item())
        expected = plackett_luce_nll(s[0].tolist(), order)
        assert listmle_loss(s, quality).item() == pytest.approx(expected, rel=1e-9)


def test_listmle_is_the_nll_of_a_distribution_over_orders():
    s = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    total = 0.0
    for perm in itertools.permutations(range(3)):
        quality = torch.zeros(1, 3, dtype=torch.float64)
        for rank, i in enumerate(perm):
            quality[0, i] = 3 - rank
        total += math.exp(-listmle_loss(s, quality).item())
    assert total == pytest.approx(1.0)


def test_ties_keep_the_given_candidate_order():
    s = torch.tensor([[0.1, 0.9, -0.5]], dtype=torch.float64)
    quality = torch.tensor([[5.0, 5.0, 1.0]], dtype=torch.float64)
    assert listmle_loss(s, quality).item() == pytest.approx(plackett_luce_nll(s[0].tolist(), [0, 1, 2]))


def test_only_the_order_of_the_data_scores_matters():
    s = torch.randn(3, 4, dtype=torch.float64)
    q = torch.rand(3, 4, dtype=torch.float64)
    for fn in (listmle_loss, margin_loss):
        assert torch.allclose(fn(s, q), fn(s, q * 1000 + 0.3))


@pytest.mark.parametrize("fn", [listmle_loss, margin_loss])
def test_padded_candidates_are_ignored(fn):
    s = torch.tensor([[0.2, -0.4, 1.0, 7.0, -3.0]], dtype=torch.float64)
    q = torch.tensor([[3.0, 1.0, 2.0, 99.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False, False]])
    assert fn(s, q, mask).item() == pytest.approx(fn(s[:, :3], q[:, :3]).item())
    s.requires_grad_(True)
    fn(s, q, mask).sum().backward()
    assert torch.isfinite(s.grad).all() and (s.grad[0, 3:] == 0).all()


def test_margin_loss_by_hand():
    # gold order: candidate 1 (q=9), 0 (q=5), 2 (q=1); s_pi = [0.5, 0.4, 0.6]
    s = torch.tensor([[0.4, 0.5, 0.6]])
    q = torch.tensor([[5.0, 9.0, 1.0]])
    m = 0.1
    expected = max(0, 0.4 - 0.5 + m) + max(0, 0.6 - 0.5 + 2 * m) + max(0, 0.6 - 0.4 + m)
    assert margin_loss(s, q, margin=m).item() == pytest.approx(expected)


def test_gradients_reach_every_score():
    s = torch.randn(2, 4, requires_grad=True)
    q = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    listmle_loss(s, q).sum().backward()
    assert (s.grad[:, :3] != 0).all()  # the last in gold order enters only through logsumexps
    assert (s.grad != 0).sum() >= 6


def test_sequence_scores_are_mean_token_logprobs():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 1],
                           [IGNORE_INDEX, 2, 6, IGNORE_INDEX, IGNORE_INDEX]])
    lp = token_logprobs(logits, labels)
    logp = torch.log_softmax(logits, -1)
    expected0 = (logp[0, 1, 3] + logp[0, 2, 4] + logp[0, 3, 1]) / 3
    expected1 = (logp[1, 0, 2] + logp[1, 1, 6]) / 2
    assert torch.allclose(sequence_scores(lp, labels), torch.stack([expected0, expected1]))


def test_unknown_rank_loss_is_named():
    with pytest.raises(ValueError, match=r"Unknown loss type: bogus. Should be one of \['listmle', 'margin'\]"):
        rank_loss_fn("bogus")
