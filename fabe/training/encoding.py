"""Turning Tuna records into token ids and padded batches for training.

The prompt and each target are tokenized separately and concatenated (docs/method.md): a prompt
tokenized together with its target can merge tokens across the boundary, and cutting at
len(prompt) then mislabels them. Labels are IGNORE_INDEX over the prompt. Batches are
padded to their own longest row (never to max_length), and `lengths` lets the sampler
group samples of similar length.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from fabe.data.dataset import Record
from fabe.training.losses import IGNORE_INDEX
from fabe.training.packing import pack, pad_rows
from fabe.training.prompt import build_prompt

logger = logging.getLogger(__name__)

MODES = ("simple", "full")


@dataclass
class Encoded:
    """One record in ids: the prompt and its candidate targets (simple mode: the best only)."""

    prompt: list[int]
    targets: list[list[int]]  # each ends with eos unless it was cut to fit max_length
    quality: list[float]  # data scores of `targets`
    best: int  # index of the best-scored target

    @property
    def length(self) -> int:
        """Tokens this sample costs in a batch (all its rows)."""
        return sum(len(self.prompt) + len(t) for t in self.targets)


def prompt_ids(tokenizer: Any, code: str) -> list[int]:
    """The prompt's ids, led by BOS when the tokenizer adds one (Llama, DeepSeek)."""
    ids = tokenizer(build_prompt(code), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [bos]
    return ([bos] if adds_bos else []) + ids


_LONGEST_TOKEN: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def min_tokens(tokenizer: Any, text: str) -> int:
    """A lower bound on `text`'s token count, found without tokenizing it: its UTF-8 bytes over
    the longest token's length (a 5 MB function would take seconds to tokenize only to be
    found too long for any window)."""
    if tokenizer not in _LONGEST_TOKEN:
        _LONGEST_TOKEN[tokenizer] = max(map(len, tokenizer.get_vocab()), default=1)
    return len(text.encode("utf-8", errors="replace")) // max(_LONGEST_TOKEN[tokenizer], 1)


def target_ids(tokenizer: Any, code: str) -> list[int]:
    return tokenizer(code, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode_records(records: Sequence[Record], tokenizer: Any, mode: str,
                   max_length: int) -> tuple[list[Encoded], dict[str, int]]:
    """Encode records; over-long samples keep the prompt whole and have their targets cut.
    Returns the encoded samples and counts {"cut": ..., "dropped": ...} (dropped: the prompt
    alone leaves no room for a target)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode: {mode}. Should be one of {list(MODES)}")
    counts = {"cut": 0, "dropped": 0}
    out: list[Encoded] = []
    for r in records:
        if min_tokens(tokenizer, r.input) >= max_length:
            counts["dropped"] += 1
            continue
        prompt = prompt_ids(tokenizer, r.input)
        room = max_length - len(prompt)
        if room < 1:
            counts["dropped"] += 1
            continue
        best = max(range(len(r.score)), key=r.score.__getitem__)
        chosen = [best] if mode == "simple" else list(range(len(r.output)))
        targets = [target_ids(tokenizer, r.output[i]) for i in chosen]
        if any(len(t) > room for t in targets):
            counts["cut"] += 1
            targets = [t[:room] for t in targets]
        out.append(Encoded(prompt, targets, [r.score[i] for i in chosen],
                           0 if mode == "simple" else best))
    if counts["cut"] or counts["dropped"]:
        logger.warning("max_length %d: %d samples had their targets cut, %d were dropped "
                       "(prompt alone too long)", max_length, counts["cut"], counts["dropped"])
    return out, counts


class EncodedDataset(Dataset):
    def __init__(self, samples: list[Encoded]):
        self.samples = samples
        self.lengths = [s.length for s in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Encoded:
        return self.samples[i]


@dataclass
class Collator:
    """Batches of Encoded samples: packed (`fabe.training.packing`, the default: each prompt
    once, several samples per row of at most `capacity` tokens, a block attention mask) or
    plain, one row per prompt + candidate padded to the longest (right padding).

    Plain output: input_ids, attention_mask (R, T) and labels (R, T) with the target tokens
    of each sample's best row only (so Trainer's token count is the MLE's). In full mode also
    score_labels (R, T) with every row's targets, cand_index (B, C) the row of each
    candidate (-1 = padding) and quality (B, C).
    """

    pad_token_id: int
    mode: str = "simple"
    pad_to_multiple_of: int | None = None
    packing: bool = False
    capacity: int = 4096  # tokens per packed row

    def __call__(self, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        if self.packing:
            return pack(batch, self.pad_token_id, self.capacity, self.mode == "full", self.pad_to_multiple_of)
        rows, labels, mle, index = [], [], [], []
        for sample in batch:
            index.append([])
            for j, target in enumerate(sample.targets):
                index[-1].append(len(rows))
                rows.append(sample.prompt + target)
                labels.append([IGNORE_INDEX] * len(sample.prompt) + target)
                mle.append(labels[-1] if j == sample.best else [IGNORE_INDEX] * len(labels[-1]))
        width = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = {
            "input_ids": pad_rows(rows, self.pad_token_id, width),
            "attention_mask": pad_rows([[1] * len(r) for r in rows], 0, width),
            "labels": pad_rows(mle, IGNORE_INDEX, width),
        }
        if self.mode == "full":
            n_cand = max(len(i) for i in index)
            out["score_labels"] = pad_rows(labels, IGNORE_INDEX, width)
            out["cand_index"] = pad_rows(index, -1, n_cand)
            out["quality"] = torch.tensor(
                [s.quality + [0.0] * (n_cand - len(s.quality)) for s in batch], dtype=torch.float)
        return out
