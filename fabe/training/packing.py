"""Packed batches: each sample's prompt once, followed by its candidates, several samples to a
row, under a block attention mask, so a full-mode step costs about (P + C T) tokens instead of
C (P + T) and padding all but disappears, with no KV cache (it works with gradient
checkpointing, LoRA, DDP and DeepSpeed).

In a row, a token may attend to an earlier token of its own sample's prompt, or of its own
candidate; never to another candidate or another sample. Position ids restart at 0 for each
sample and each candidate continues from its prompt's length, as in the plain layout
(prompt + candidate in a row of its own), so the loss and gradients are the plain layout's.
The target tokens' log-probabilities are computed from the last hidden states in chunks
(`chunked_token_logprobs`), never materializing (rows x length x vocabulary) logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fabe.training.losses import IGNORE_INDEX

CHUNK_TOKENS = 1024  # target tokens whose logits exist at once (x vocabulary x 4 bytes)


def pad_rows(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    """Rows of ids right-padded with `value` to `width`, as one long tensor."""
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` packed first-fit decreasing into bins of `capacity` tokens (a
    longer item gets a bin of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    packed: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                packed[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            packed.append([i])
            room.append(capacity - lengths[i])
    return [sorted(b) for b in packed]


def bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows of at most `capacity` tokens (or one item) with the fewest padded tokens: the
    rows are padded to the longest, so first-fit is tried at every even split of the total
    (k rows of total / k tokens) as well as at the capacity, and the least padded kept."""
    total, longest = sum(lengths), max(lengths)
    caps = {capacity} | {max(longest, -(-total // k)) for k in range(1, len(lengths) + 1)}

    def padded(rows: list[list[int]]) -> tuple[int, int]:
        return len(rows) * max(sum(lengths[i] for i in row) for row in rows), len(rows)

    return min((first_fit(lengths, cap) for cap in sorted(caps) if cap <= max(capacity, longest)), key=padded)


def pack(batch: Sequence[Any], pad_token_id: int, capacity: int, full: bool,
         pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """A packed batch of `Encoded` samples (see the module docstring) in rows of at most
    `capacity` tokens (a longer sample fills a row of its own).

    Output: input_ids, position_ids, segments (rows, L): the sample of each token (-1 on
    padding); roles (rows, L): 0 on a prompt, j + 1 on candidate j; spans: per row, each
    sample's (prompt start, prompt length, [(candidate start, length), ...]); gather (R, T): for each
    candidate's target tokens, the flat index (row * L + position) of the position that
    predicts it; labels and score_labels (R, 1 + T) laid out as the plain rows' target part
    (a leading ignored column), labels holding only each sample's best candidate;
    in full mode also cand_index (B, C) and quality (B, C)."""
    units = [len(s.prompt) + sum(len(t) for t in s.targets) for s in batch]
    rows = bins(units, capacity)
    width = max(sum(units[i] for i in row) for row in rows)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    roles = torch.zeros((len(rows), width), dtype=torch.long)
    spans: list[list[tuple[int, int, list[tuple[int, int]]]]] = [[] for _ in rows]
    gather: list[list[int]] = []
    targets: list[list[int]] = []
    best: list[bool] = []
    index: list[list[int]] = [[] for _ in batch]
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            sample = batch[i]
            p = len(sample.prompt)
            ids[r, at:at + p] = torch.tensor(sample.prompt)
            positions[r, at:at + p] = torch.arange(p)
            segments[r, at:at + p] = i
            prompt_last = r * width + at + p - 1
            spans[r].append((at, p, []))
            at += p
            for j, target in enumerate(sample.targets):
                n = len(target)
                ids[r, at:at + n] = torch.tensor(target)
                positions[r, at:at + n] = torch.arange(p, p + n)
                segments[r, at:at + n] = i
                roles[r, at:at + n] = j + 1
                spans[r][-1][2].append((at, n))
                index[i].append(len(targets))
                gather.append([prompt_last] + [r * width + at + t for t in range(n - 1)])
                targets.append(target)
                best.append(j == sample.best)
                at += n
    t_width = max(map(len, targets))
    ignored = [IGNORE_INDEX]
    out = {"input_ids": ids, "position_ids": positions, "segments": segments, "roles": roles, "spans": spans,
           "gather": pad_rows(gather, 0, t_width),
           "labels": pad_rows([ignored + (t if b else ignored * len(t)) for t, b in zip(targets, best)],
                              IGNORE_INDEX, 1 + t_width)}
    if full:
        n_cand = max(len(i) for i in index)
        out["score_labels"] = pad_rows([ignored + t for t in targets], IGNORE_INDEX, 1 + t_width)
        out["cand_index"] = pad_rows(index, -1, n_cand)
        out["quality"] = torch.tensor([s.quality + [0.0] * (n_cand - len(s.quality)) for s in batch],
                                      dtype=torch.float)
    return out


def allowed(segments: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
    """(rows, 1, L, L) bool: query q may attend to key k (see the module docstring); a
    padding position attends to itself only, so no softmax row is empty."""
    q_seg, k_seg = segments[:, :, None], segments[:, None, :]
    q_role, k_role = roles[:, :, None], roles[:, None, :]
    length = segments.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    same = (q_seg == k_seg) & (q_seg >= 0) & ((k_role == 0) | (k_role == q_role))
    self_only = torch.eye(length, dtype=torch.bool, device=segments.device) & (q_seg < 0)
    return ((same & causal) | self_only)[:, None]


BLOCKS = "fabe_blocks"  # the attention implementation registered by `register_block_attention`


def register_block_attention() -> None:
    """Make `BLOCKS` an attention implementation transformers models can be set to: packed
    rows attend block by block (`block_attention`); other batches as SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(BLOCKS, block_attention)
    AttentionMaskInterface.register(BLOCKS, sdpa_mask)


def block_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                    fabe_spans: list | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of packed rows computed only where a token may look: each prompt over
    itself (causal), each candidate over its prompt and itself, one SDPA call per block, so a
    full-mode row costs P^2 / 2 + C T (P + T / 2) pairs instead of (P + C T)^2; without
    `fabe_spans` (a plain batch) it is SDPA. query (B, H, L, D), key/value (B, KV, L, D);
    returns (B, L, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if fabe_spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = key.size(1) != query.size(1)
    p_drop = dropout if module.training else 0.0
    rows = []
    for r, units in enumerate(fabe_spans):
        q, k, v = query[r:r + 1], key[r:r + 1], value[r:r + 1]
        pieces, at = [], 0
        for start, p, cands in units:
            pk, pv = k[:, :, start:start + p], v[:, :, start:start + p]
            pieces.append(sdpa(q[:, :, start:start + p], pk, pv, is_causal=True, dropout_p=p_drop, scale=scaling,
                               enable_gqa=gqa))
            for c_start, n in cands:
                own = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
                mask = torch.cat([torch.ones(n, p, dtype=torch.bool, device=q.device), own], 1)
                pieces.append(sdpa(q[:, :, c_start:c_start + n], torch.cat([pk, k[:, :, c_start:c_start + n]], 2),
                                   torch.cat([pv, v[:, :, c_start:c_start + n]], 2), attn_mask=mask,
                                   dropout_p=p_drop, scale=scaling, enable_gqa=gqa))
            at = cands[-1][0] + cands[-1][1] if cands else start + p
        if at < q.size(2):  # the row's padding: attended by nothing, its output unused
            pieces.append(q.new_zeros(1, q.size(1), q.size(2) - at, q.size(3)))
        rows.append(torch.cat(pieces, 2))
    return torch.cat(rows, 0).transpose(1, 2).contiguous(), None


def attention_mask(model: Any, segments: torch.Tensor, roles: torch.Tensor, dtype: torch.dtype) -> Any:
    """The block mask in the form the model's attention implementation takes: a bool tensor
    for SDPA, an additive float one for eager attention, a BlockMask for flex attention (the
    block attention reads the rows' spans instead)."""
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation == "flex_attention":
        return flex_block_mask(segments, roles)
    mask = allowed(segments, roles)
    if implementation == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask


def mask_mod(segments: torch.Tensor, roles: torch.Tensor):
    """`allowed` as a flex-attention mask function of (batch, head, query, key) indices."""
    def allow(b, h, q, k):
        same = (segments[b, q] == segments[b, k]) & (segments[b, q] >= 0)
        own = (roles[b, k] == 0) | (roles[b, k] == roles[b, q])
        return ((q >= k) & same & own) | ((q == k) & (segments[b, q] < 0))
    return allow


def flex_block_mask(segments: torch.Tensor, roles: torch.Tensor) -> Any:
    """The same mask as a flex-attention BlockMask: blocks no query of which may see are
    skipped, so the attention costs about the tokens each candidate sees, not L x L."""
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = segments.shape
    return create_block_mask(mask_mod(segments, roles), rows, None, length, length, device=segments.device)


def chunked_token_logprobs(head: torch.nn.Module, hidden: torch.Tensor, gather: torch.Tensor,
                           labels: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """log p of each target token, (R, T): `hidden` (rows, L, D) the last hidden states,
    `gather` (R, T) the flat position predicting each token, `labels` (R, 1 + T) as `pack`
    lays them out (0 where ignored). The output layer runs on `chunk` tokens at a time and is
    recomputed in backward, so at most one chunk's logits are alive: memory does not grow
    with rows x length x vocabulary."""
    flat = hidden.reshape(-1, hidden.size(-1))
    where = gather.reshape(-1)
    targets = labels[:, 1:].reshape(-1)
    keep = targets.ne(IGNORE_INDEX).nonzero().squeeze(-1)
    out = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    parts = [checkpoint(_logprobs, head, flat, where[keep[s:s + chunk]], targets[keep[s:s + chunk]],
                        use_reentrant=False) for s in range(0, keep.numel(), chunk)]
    if parts:
        out = out.index_put((keep,), torch.cat(parts))
    return out.view(gather.shape)


def _logprobs(head: torch.nn.Module, flat: torch.Tensor, where: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(flat[where]).float()
    return -F.cross_entropy(logits, targets, reduction="none")
