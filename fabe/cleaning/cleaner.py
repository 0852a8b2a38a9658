"""Cleaning: load a trained cleaner and turn poisoned code into K ranked candidates.

Each candidate carries its length-normalized log-likelihood (the sequence score of
training), a softmax weight across the K (the FABE front-door weights), whether it parses
and which known triggers it still holds. Diverse beam search is the default decoding (what
the FABE defense uses); plain beam search and sampling go through `generate`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fabe.cleaning import trust
from fabe.cleaning.decoding import diverse_beam_search
from fabe.data import cparse
from fabe.data.triggers import detect_triggers
from fabe.registry import Registry
from fabe.training.encoding import min_tokens, prompt_ids
from fabe.training.losses import IGNORE_INDEX, sequence_scores, token_logprobs

logger = logging.getLogger(__name__)


class InputTooLong(ValueError):
    """The prompt plus the room for the answer does not fit the model's window."""


class Cancelled(RuntimeError):
    """The caller cancelled the generation (its `cancel` event was set)."""


Decoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # sequences (B, K, T), mean log p (B, K), finished (B, K)
Step = Callable[[int], bool]  # called with the tokens generated so far; True stops


def _diverse_beam(cleaner: Cleaner, ids: torch.Tensor, mask: torch.Tensor, max_new: int, cfg: CleanConfig,
                  step: Step) -> Decoded:
    tok = cleaner.tokenizer
    out = diverse_beam_search(
        cleaner.model, ids, mask, num_beams=cfg.k, num_beam_groups=cfg.groups or cfg.k,
        diversity_penalty=cfg.diversity, max_new_tokens=max_new,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, step_callback=step)
    return out.sequences, out.logprobs / out.lengths, out.finished


def _generated(cleaner: Cleaner, ids: torch.Tensor, mask: torch.Tensor, max_new: int, step: Step,
               **kwargs: Any) -> Decoded:
    """`generate` with K return sequences, each then scored teacher-forced."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
            stop = step(input_ids.shape[1] - ids.shape[1])
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    tok = cleaner.tokenizer
    k = kwargs["num_return_sequences"]
    with torch.no_grad():
        out = cleaner.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                     stopping_criteria=StoppingCriteriaList([Stop()]), **kwargs)
    seqs = out[:, ids.shape[1]:].view(ids.shape[0], k, -1)
    prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    return seqs, cleaner.score(prompts, seqs), (seqs == tok.eos_token_id).any(-1)


def _beam(cleaner: Cleaner, ids: torch.Tensor, mask: torch.Tensor, max_new: int, cfg: CleanConfig,
          step: Step) -> Decoded:
    return _generated(cleaner, ids, mask, max_new, step, num_return_sequences=cfg.k, num_beams=cfg.k,
                      do_sample=False)


def _sampling(cleaner: Cleaner, ids: torch.Tensor, mask: torch.Tensor, max_new: int, cfg: CleanConfig,
              step: Step) -> Decoded:
    torch.manual_seed(cfg.seed)
    return _generated(cleaner, ids, mask, max_new, step, num_return_sequences=cfg.k, do_sample=True,
                      temperature=cfg.temperature, top_p=cfg.top_p, num_beams=1)


DECODINGS: Registry[Callable[..., Decoded]] = Registry("decoding", {
    "diverse_beam": _diverse_beam, "beam": _beam, "sampling": _sampling})


@dataclass
class CleanConfig:
    k: int = field(default=4, metadata={"help": "Candidates per input."})
    decoding: str = field(default="diverse_beam", metadata={"help": "diverse_beam, beam or sampling.",
                                                            "choices": list(DECODINGS)})
    diversity: float = field(default=0.5, metadata={"help": "Hamming diversity penalty (diverse_beam)."})
    groups: int = field(default=0, metadata={"help": "Beam groups (diverse_beam); 0 = one per candidate."})
    max_new_tokens: int = field(default=0, metadata={
        "help": "Longest answer in tokens; 0 = 1.25 x the input's length + 16."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Sampling nucleus."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k: need at least 1 candidate, got {self.k}")
        DECODINGS[self.decoding]  # an unknown name fails with the known ones
        groups = self.groups or self.k
        if self.decoding == "diverse_beam" and self.k % groups:
            raise ValueError(f"groups: {groups} does not divide k={self.k}")
        if self.diversity < 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("diversity must be >= 0, temperature > 0 and top_p in (0, 1]")


@dataclass
class Candidate:
    rank: int
    code: str
    score: float  # mean log p over the candidate's tokens (eos included)
    weight: float  # softmax of the scores / the model's fitted temperature, across the K candidates
    parses: bool
    triggers_left: list[str]
    finished: bool  # ended with eos (False: cut at max_new_tokens)
    keeps_signature: bool | None = None  # the input's return type, name and parameter types (fabe.cleaning.trust)
    kept: float = 1.0  # share of the input's lines kept, in order
    is_input: bool = False  # the input unchanged
    same_as: int | None = None  # rank of a better-ranked identical candidate
    matches_reference: bool | None = None  # set when the record has a reference

    def to_dict(self) -> dict:
        return asdict(self)


def read_code_file(path: str | Path, name: str | None = None) -> str:
    """The C source in a file (an upload or `--input`), or a ValueError naming the file (as
    `name`, default the path) and saying what it is instead: missing, binary, not UTF-8."""
    from fabe.data.jsonio import binary_kind

    name = name or str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{name}: cannot read: {e.strerror or e}") from None
    binary = binary_kind(raw[:8192])
    if binary:
        raise ValueError(f"{name}: {binary}; give C source code")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{name}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def check_code(code: str) -> None:
    """Refuse what cannot be source code: empty text, or text holding NUL characters (a binary
    file pasted in would become thousands of byte tokens, "cleaned" into noise)."""
    if not code.strip():
        raise ValueError("code: empty input")
    if "\x00" in code:
        raise ValueError("code: holds NUL characters (binary data), not C source")


def rank_candidates(codes: list[str], scores: list[float], finished: list[bool], source: str,
                    temperature: float = 1.0) -> list[Candidate]:
    """The candidates of a cleaning of `source`, best score first, with their weights
    (softmax of score / temperature) and trust signals."""
    weights = torch.softmax(torch.tensor(scores, dtype=torch.float64) / temperature, 0).tolist()
    order = sorted(range(len(codes)), key=lambda i: -scores[i])
    ranked = [codes[i] for i in order]
    return [Candidate(rank + 1, codes[i], round(scores[i], 6), round(weights[i], 6),
                      cparse.parses(codes[i]), sorted({d.kind for d in detect_triggers(codes[i])}),
                      finished[i], **asdict(signals))
            for rank, (i, signals) in enumerate(zip(order, trust.candidate_signals(source, ranked)))]


class Cleaner:
    """A loaded cleaner model with its tokenizer; `clean` / `clean_batch` do the work."""

    def __init__(self, model: Any, tokenizer: Any, source: str = "", meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.meta = meta or {}
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, source: str | Path, device: str = "auto", dtype: str = "auto") -> "Cleaner":
        """A run directory (its final/), a final/ or checkpoint-N folder, or a plain model."""
        from fabe.cleaning.loading import load_trained

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer, meta = load_trained(str(source), device=device, dtype=dtype)
        return cls(model, tokenizer, str(source), meta)

    @property
    def window(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def _budget(self, prompt_len: int, n_input: int, cfg: CleanConfig) -> int:
        max_new = cfg.max_new_tokens or int(1.25 * n_input) + 16
        if self.window and prompt_len + max_new > self.window:
            raise InputTooLong(
                f"the input is {n_input} tokens ({prompt_len} with the prompt); with room for "
                f"{max_new} new tokens it exceeds the model's window of {self.window} tokens")
        return max_new

    def _refuse_huge(self, code: str) -> None:
        """InputTooLong, without tokenizing, for an input that cannot fit whatever its tokens."""
        at_least = min_tokens(self.tokenizer, code)
        if self.window and at_least > self.window:
            raise InputTooLong(f"the input is {len(code):,} characters, at least {at_least:,} tokens; it "
                               f"exceeds the model's window of {self.window} tokens")

    def check_fits(self, code: str, cfg: CleanConfig) -> None:
        """Raise InputTooLong when `code` cannot be cleaned within the model's window."""
        self._refuse_huge(code)
        n_input = len(self.tokenizer(code, add_special_tokens=False)["input_ids"])
        self._budget(len(prompt_ids(self.tokenizer, code)), n_input, cfg)

    def check_records_fit(self, records: Sequence[Any], cfg: CleanConfig, data: str | Path) -> None:
        """Refuse a split whose inputs do not all fit the window, naming every such record,
        before any generation (a long evaluation must not fail at its 900th record)."""
        too_long = []
        for record in records:
            try:
                self.check_fits(record.input, cfg)
            except InputTooLong as e:
                too_long.append(f"{data}: record {record.id!r}: input: {e}")
        if too_long:
            shown = too_long[:20] + ([f"... and {len(too_long) - 20} more"] if len(too_long) > 20 else [])
            raise InputTooLong("\n".join(shown))

    def clean(self, code: str, cfg: CleanConfig | None = None) -> list[Candidate]:
        return self.clean_batch([code], cfg)[0]

    def clean_batch(self, codes: Sequence[str], cfg: CleanConfig | None = None,
                    batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
                    cancel: threading.Event | None = None,
                    on_token: Callable[[int, int], None] | None = None) -> list[list[Candidate]]:
        """Clean many inputs, `batch_size` at a time; `progress(done, total)` after each batch,
        `on_token(generated, budget)` after each decoding step; setting `cancel` stops the
        work at the next token and raises Cancelled. Inputs are batched by length (results in
        input order): a batch pads to its longest input and decodes until its longest output
        ends, so mixing lengths wastes both."""
        cfg = cfg or CleanConfig()
        for code in codes:
            check_code(code)
        order = sorted(range(len(codes)), key=lambda i: len(codes[i]))
        results: dict[int, list[Candidate]] = {}
        for start in range(0, len(codes), batch_size):
            chunk = order[start:start + batch_size]
            results.update(zip(chunk, self._clean_chunk([codes[i] for i in chunk], cfg, cancel, on_token)))
            if progress is not None:
                progress(len(results), len(codes))
        return [results[i] for i in range(len(codes))]

    def _clean_chunk(self, codes: list[str], cfg: CleanConfig, cancel: threading.Event | None = None,
                     on_token: Callable[[int, int], None] | None = None) -> list[list[Candidate]]:
        tok = self.tokenizer
        for code in codes:
            self._refuse_huge(code)
        prompts = [prompt_ids(tok, c) for c in codes]
        n_input = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in codes)
        max_new = self._budget(max(len(p) for p in prompts), n_input, cfg)
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)

        def step(generated: int) -> bool:
            if on_token is not None:
                on_token(generated, max_new)
            return cancel is not None and cancel.is_set()

        seqs, means, finished = DECODINGS[cfg.decoding](self, ids, mask, max_new, cfg, step)
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled")
        return [self._to_candidates(seqs[b], means[b], finished[b], codes[b]) for b in range(len(codes))]

    @property
    def temperature(self) -> float:
        """The weights' temperature fitted on a validation split (`fabe calibrate`), else 1."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))

    def assess(self, code: str, cands: list[Candidate], abstain: bool = False) -> trust.Cleaning:
        return trust.assess(code, cands, abstain)

    def _to_candidates(self, seqs: torch.Tensor, means: torch.Tensor,
                       finished: torch.Tensor, source: str) -> list[Candidate]:
        eos = self.tokenizer.eos_token_id
        codes = []
        for row in seqs.tolist():
            row = row[:row.index(eos)] if eos in row else row
            codes.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return rank_candidates(codes, means.tolist(), finished.tolist(), source, self.temperature)

    @torch.no_grad()
    def score(self, prompts: list[list[int]], seqs: torch.Tensor) -> torch.Tensor:
        """(B, K) mean log p of each generated sequence (through eos), teacher-forced."""
        eos, rows, labels = self.tokenizer.eos_token_id, [], []
        for b, prompt in enumerate(prompts):
            for row in seqs[b].tolist():
                target = row[:row.index(eos) + 1] if eos in row else row
                rows.append(prompt + target)
                labels.append([IGNORE_INDEX] * len(prompt) + target)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        lab = torch.tensor([r + [IGNORE_INDEX] * (width - len(r)) for r in labels], device=self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        return sequence_scores(token_logprobs(logits, lab), lab).view(seqs.shape[0], seqs.shape[1])


def cleaning_json(cleaning: trust.Cleaning) -> str:
    return json.dumps(cleaning.to_dict(), indent=2)
