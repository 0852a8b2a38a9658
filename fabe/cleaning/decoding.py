"""Diverse beam search (Vijayakumar et al., 2016), batched, on the model's KV cache.

transformers 5 routes `num_beam_groups` to a Hub-hosted generation method that cannot run
offline, so the project carries its own. The K beams are split into G groups of K/G; at each
step the groups choose in turn, and group j's log-probabilities are lowered by
`diversity_penalty` times the number of times each token was chosen by groups < j at this
step (the Hamming diversity of the paper). Within a group the search is transformers' own
beam search (top 2g continuations, finished hypotheses scored sum / length**length_penalty,
the same early-stop heuristic), so with one group and no penalty it returns the sequences
and scores of `generate(num_beams=K, num_return_sequences=K)`.

Alongside the (penalized) beam score every hypothesis carries its raw log-likelihood, so a
candidate's length-normalized log-likelihood needs no second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

_NEG = -1.0e9


@dataclass
class BeamOutput:
    sequences: torch.Tensor  # (B, K, T) generated tokens, pad after the end
    scores: torch.Tensor  # (B, K) beam scores: penalized log-prob sum / length**length_penalty
    logprobs: torch.Tensor  # (B, K) raw log-likelihood sums of the generated tokens
    lengths: torch.Tensor  # (B, K) generated tokens, eos included
    finished: torch.Tensor  # (B, K) True where the hypothesis ended with eos


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t[b, idx[b, i], ...] for (B, n, ...) t and (B, m) idx."""
    while idx.dim() < t.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(t, idx, dim=1)


@dataclass
class _Group:
    """Search state of one beam group for every input: g running and g finished beams."""

    seq: torch.Tensor  # (B, g, T) running tokens
    score: torch.Tensor  # (B, g) running penalized sums
    raw: torch.Tensor  # (B, g) running raw sums
    fin_seq: torch.Tensor
    fin_score: torch.Tensor
    fin_raw: torch.Tensor
    fin_len: torch.Tensor
    fin_eos: torch.Tensor
    is_fin: torch.Tensor  # (B, g) finished slot holds a hypothesis
    open: torch.Tensor  # (B, 1) the early-stop heuristic still allows improvement
    live: bool = True  # transformers' loop condition, for this group

    @classmethod
    def start(cls, batch: int, g: int, steps: int, pad: int, device: torch.device) -> "_Group":
        score = torch.zeros(batch, g, device=device)
        score[:, 1:] = _NEG  # all beams start equal: only the first one is live
        seq = torch.full((batch, g, steps), pad, dtype=torch.long, device=device)
        return cls(seq, score, score.clone(), seq.clone(), torch.full_like(score, _NEG),
                   torch.zeros_like(score), torch.zeros_like(score, dtype=torch.long),
                   torch.zeros_like(score, dtype=torch.bool), torch.zeros_like(score, dtype=torch.bool),
                   torch.ones(batch, 1, dtype=torch.bool, device=device))


def _step(st: _Group, logp: torch.Tensor, penalized: torch.Tensor, cur: int, max_new: int,
          eos: torch.Tensor, length_penalty: float, early_stopping: bool | str) -> torch.Tensor:
    """Advance one group by one token (transformers' beam step); returns parent beams (B, g)."""
    batch, g, vocab = logp.shape
    keep = (1 + eos.numel()) * g
    total = (penalized + st.score[:, :, None]).reshape(batch, -1)  # (B, g*V)
    top_score, top_idx = torch.topk(total, k=keep)  # (B, 2g)
    parent, token = top_idx // vocab, top_idx % vocab
    top_raw = (logp + st.raw[:, :, None]).reshape(batch, -1).gather(1, top_idx)
    top_seq = _take(st.seq, parent).clone()
    top_seq[:, :, cur] = token
    eos_hit = torch.isin(token, eos)
    hit = eos_hit | (cur + 1 >= max_new)
    # finished: only the best g continuations may finish (transformers' rule)
    first_g = torch.arange(keep, device=logp.device)[None, :] < g
    just = hit & first_g
    normed = top_score / ((cur + 1) ** length_penalty)
    normed = normed + (st.is_fin.all(-1, keepdim=True) & (early_stopping is True)) * _NEG
    normed = normed + (~st.open) * _NEG + (~just) * _NEG
    merged = torch.topk(torch.cat([st.fin_score, normed], 1), k=g).indices
    cat = lambda a, b: _take(torch.cat([a, b], 1), merged)  # noqa: E731
    st.fin_seq, st.fin_score = cat(st.fin_seq, top_seq), cat(st.fin_score, normed)
    st.fin_raw = cat(st.fin_raw, top_raw)
    st.fin_len = cat(st.fin_len, torch.full_like(token, cur + 1))
    st.fin_eos, st.is_fin = cat(st.fin_eos, eos_hit), cat(st.is_fin, just)
    # running: the best g continuations that did not stop
    running = torch.topk(top_score + hit * _NEG, k=g).indices
    st.seq, st.score = _take(top_seq, running), _take(top_score + hit * _NEG, running)
    st.raw = _take(top_raw, running)
    # early-stop heuristic (early_stopping=False: best running score at the current length)
    length = (max_new if early_stopping == "never" and length_penalty > 0 else cur + 1)
    best_running = st.score[:, :1] / (length ** length_penalty)
    worst_fin = torch.where(st.is_fin, st.fin_score.min(1, keepdim=True).values, _NEG)
    st.open = st.open & (best_running > worst_fin).any(-1, keepdim=True)
    full = bool(st.is_fin.all()) and early_stopping is True
    st.live = bool(st.open.any()) and not full and not bool(hit.all())
    return _take(parent, running)


def _penalty(tokens: list[torch.Tensor], vocab: int, batch: int, device) -> torch.Tensor:
    """(B, V) how often each token was chosen at this step by the earlier groups."""
    counts = torch.zeros(batch, vocab, device=device)
    for t in tokens:
        counts.scatter_add_(1, t, torch.ones_like(t, dtype=counts.dtype))
    return counts


@torch.no_grad()
def diverse_beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                        num_beams: int, num_beam_groups: int, diversity_penalty: float,
                        max_new_tokens: int, eos_token_id: int | list[int], pad_token_id: int,
                        length_penalty: float = 1.0, early_stopping: bool | str = False,
                        step_callback: Callable[[int], bool] | None = None) -> BeamOutput:
    """K = num_beams hypotheses per input (left-padded `input_ids`, (B, L)), in G groups.
    `step_callback(n)` runs after each new token (n generated so far); True stops the search.
    The KV cache is preallocated (StaticCache): a growing cache re-concatenates every layer's
    keys and values at each token, which took 40% of a batched search on CPU."""
    from transformers import StaticCache

    if num_beams < 1 or num_beam_groups < 1 or num_beams % num_beam_groups:
        raise ValueError(f"num_beams ({num_beams}) must be a positive multiple of "
                         f"num_beam_groups ({num_beam_groups})")
    batch, device = input_ids.shape[0], input_ids.device
    groups, g = num_beam_groups, num_beams // num_beam_groups
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id, device=device)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = StaticCache(config=model.config, max_cache_len=input_ids.shape[1] + max_new_tokens)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                cache=cache, use_cache=True)
    cache = out.past_key_values
    cache.reorder_cache(torch.arange(batch, device=device).repeat_interleave(num_beams))
    logits = out.logits[:, -1].float().repeat_interleave(num_beams, 0)  # (B*K, V)
    mask = attention_mask.repeat_interleave(num_beams, 0)
    next_pos = positions[:, -1:].repeat_interleave(num_beams, 0) + 1
    states = [_Group.start(batch, g, max_new_tokens, pad_token_id, device) for _ in range(groups)]
    identity = torch.arange(batch * num_beams, device=device)
    for cur in range(max_new_tokens):
        logp = torch.log_softmax(logits, -1).view(batch, groups, g, -1)
        chosen, parents = [], []
        for j, st in enumerate(states):
            pen = logp[:, j]
            if j and diversity_penalty:
                pen = pen - diversity_penalty * _penalty(chosen, logp.size(-1), batch, device)[:, None]
            parent = _step(st, logp[:, j], pen, cur, max_new_tokens, eos, length_penalty, early_stopping)
            chosen.append(st.seq[:, :, cur])
            parents.append(parent + j * g)
        if not any(st.live for st in states):
            break
        if step_callback is not None and step_callback(cur + 1):
            break
        rows = torch.arange(batch, device=device)[:, None] * num_beams
        beam_idx = (torch.cat(parents, 1) + rows).reshape(-1)
        if not torch.equal(beam_idx, identity):  # groups of one beam never reorder
            cache.reorder_cache(beam_idx)
        tokens = torch.cat([st.seq[:, :, cur] for st in states], 1).reshape(-1, 1)
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], 1)
        out = model(input_ids=tokens, attention_mask=mask, position_ids=next_pos,
                    cache=cache, use_cache=True)
        logits, next_pos = out.logits[:, -1].float(), next_pos + 1
    return _collect(states, batch)


def _collect(states: list[_Group], batch: int) -> BeamOutput:
    """All groups' finished hypotheses per input, best beam score first, trimmed to length."""
    cat = lambda name: torch.cat([getattr(st, name) for st in states], 1)  # noqa: E731
    order = torch.sort(cat("fin_score"), dim=1, descending=True, stable=True).indices
    seq, length = _take(cat("fin_seq"), order), _take(cat("fin_len"), order)
    return BeamOutput(seq[:, :, : int(length.max())], _take(cat("fin_score"), order),
                      _take(cat("fin_raw"), order), length, _take(cat("fin_eos"), order))
