"""FABE training losses as pure tensor functions (docs/method.md).

- `token_logprobs` / `sequence_scores`: per-token log-likelihood of candidate tokens and the
  length-normalized sequence score s_i = mean_t log p(c_i,t | prompt, c_i,<t) of Tuna
  (Zhang et al., EMNLP 2023, Eq. 3).
- `listmle_loss`: the listwise ranking loss (Xia et al., ICML 2008), the Plackett-Luce
  negative log-likelihood of the gold order: L = -sum_k [s_pi(k) - logsumexp_{j>=k} s_pi(j)].
- `margin_loss`: Tuna's pairwise alternative, sum_{i<j} max(0, s_j - s_i + m * (j - i)) over
  the gold order (Tuna, Eq. 4).

Nothing here runs under `torch.no_grad()`: gradients reach every candidate's score.
Candidate lists of different lengths are padded and masked (`cand_mask`).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from fabe.registry import Registry

IGNORE_INDEX = -100
_MASKED = -1e4  # stands for -inf on masked candidates, finite so no NaN reaches backward


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p of each label token given its prefix; 0 where the label is ignored.

    Args:
        logits: (N, T, V) next-token logits for N sequences of T tokens.
        labels: (N, T) token ids aligned with the input, IGNORE_INDEX where not scored.
    Returns:
        (N, T-1) log-probabilities of labels[:, 1:] under logits[:, :-1].
    """
    shift_logits = logits[:, :-1].float()  # (N, T-1, V)
    shift_labels = labels[:, 1:]  # (N, T-1)
    nll = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                          shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(shift_labels.shape)


def sequence_scores(token_lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Length-normalized log-likelihood per sequence.

    Args:
        token_lp: (N, T-1) from `token_logprobs`.
        labels: (N, T) the same labels.
    Returns:
        (N,) mean log p over each sequence's scored tokens.
    """
    mask = labels[:, 1:].ne(IGNORE_INDEX)  # (N, T-1)
    return (token_lp * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def _gold_order(scores: torch.Tensor, quality: torch.Tensor, cand_mask: torch.Tensor):
    """Model scores and mask permuted into the gold order (best quality first). Ties keep
    candidate order (a stable sort): tied candidates are ranked as they were given."""
    quality = quality.masked_fill(~cand_mask, float("-inf"))
    order = torch.sort(quality, dim=-1, descending=True, stable=True).indices  # (B, C)
    return scores.gather(-1, order), cand_mask.gather(-1, order)


def listmle_loss(scores: torch.Tensor, quality: torch.Tensor,
                 cand_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ListMLE: Plackett-Luce NLL of the gold order, per sample.

    Args:
        scores: (B, C) model sequence scores s_i.
        quality: (B, C) data scores y_i (higher = cleaner; only their order is used).
        cand_mask: (B, C) bool, False on padding candidates; None = all valid.
    Returns:
        (B,) -sum_k [s_pi(k) - logsumexp_{j>=k} s_pi(j)] over the valid candidates.
    """
    if cand_mask is None:
        cand_mask = torch.ones_like(scores, dtype=torch.bool)
    s, valid = _gold_order(scores, quality, cand_mask)
    s = s.masked_fill(~valid, _MASKED)
    # logsumexp over the suffix j >= k: flip, cumulative logsumexp, flip back.
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)  # (B, C)
    return -((s - suffix) * valid).sum(-1)


def margin_loss(scores: torch.Tensor, quality: torch.Tensor,
                cand_mask: torch.Tensor | None = None, margin: float = 0.1) -> torch.Tensor:
    """Tuna's pairwise margin loss, per sample.

    Args:
        scores, quality, cand_mask: as in `listmle_loss`.
        margin: m; a pair k < l positions apart in the gold order must differ by m * (l - k).
    Returns:
        (B,) sum over valid pairs k < l of max(0, s_pi(l) - s_pi(k) + m * (l - k)).
    """
    if cand_mask is None:
        cand_mask = torch.ones_like(scores, dtype=torch.bool)
    s, valid = _gold_order(scores, quality, cand_mask)
    pos = torch.arange(s.size(-1), device=s.device)
    gap = (pos[None, :] - pos[:, None]).to(s.dtype)  # (C, C): l - k
    hinge = F.relu(s[:, None, :] - s[:, :, None] + margin * gap)  # (B, C_k, C_l)
    pairs = (gap > 0) & valid[:, :, None] & valid[:, None, :]
    return (hinge * pairs).sum((-1, -2))


RANK_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("loss type", {
    "listmle": listmle_loss, "margin": margin_loss})


def rank_loss_fn(name: str, margin: float = 0.1) -> Callable[..., torch.Tensor]:
    """The ranking loss called `name`, as fn(scores, quality, cand_mask) -> (B,), with the
    margin bound where the loss takes one."""
    loss = RANK_LOSSES[name]
    return partial(loss, margin=margin) if "margin" in inspect.signature(loss).parameters else loss
