"""How well a cleaner ranks a record's own scored candidates, the thing full mode trains for:
the model's score of each candidate (its length-normalized log-likelihood given the prompt,
what training ranks) against the dataset's scores, as pairwise accuracy (over pairs the data
orders), Kendall's tau-b per record, and how often the best-scored candidate gets the
model's highest score."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from fabe.data.dataset import Record
from fabe.evaluation.metrics import rate


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two rankings (ties counted as tau-b does); None when either is
    constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n_x, n_y = concordant + discordant + ties_y, concordant + discordant + ties_x
    if n_x == 0 or n_y == 0:
        return None
    return (concordant - discordant) / math.sqrt(n_x * n_y)


def candidate_scores(cleaner, records: Sequence[Record], batch_size: int = 4,
                     progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """The model's score of each record's candidates (in the record's order), from packed
    batches (each prompt once) under no gradient."""
    from fabe.training.encoding import Collator, encode_records
    from fabe.training.losses import sequence_scores
    from fabe.training.trainer import packed_token_logprobs

    window = cleaner.window or 4096
    encoded, counts = encode_records(records, cleaner.tokenizer, "full", window)
    if counts["dropped"]:
        raise ValueError(f"{counts['dropped']} records do not fit the model's window of {window} tokens")
    collate = Collator(cleaner.tokenizer.pad_token_id, "full", packing=True, capacity=window)
    head = cleaner.model.get_output_embeddings()
    out: list[list[float]] = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            batch = {k: v.to(cleaner.device) if torch.is_tensor(v) else v for k, v in collate(chunk).items()}
            lp = packed_token_logprobs(cleaner.model, head, batch, batch["score_labels"])
            seq = sequence_scores(lp, batch["score_labels"]).tolist()
            out += [[seq[r] for r in row if r >= 0] for row in batch["cand_index"].tolist()]
            if progress is not None:
                progress(len(out), len(encoded))
    return out


def ranking_quality(records: Sequence[Record], scores: Sequence[Sequence[float]]) -> dict:
    """Pairwise accuracy (with its count and interval), mean Kendall tau-b and the best
    candidate's top rate over records with at least two differently scored candidates."""
    agree: list[bool] = []
    taus: list[float] = []
    best_top: list[bool] = []
    for record, model in zip(records, scores):
        data = record.score
        if len(set(data)) < 2:
            continue
        for i in range(len(data)):
            for j in range(i + 1, len(data)):
                if data[i] != data[j]:
                    agree.append((data[i] > data[j]) == (model[i] > model[j]))
        tau = kendall_tau_b(data, model)
        if tau is not None:
            taus.append(tau)
        top = max(data)
        best_top.append(data[max(range(len(model)), key=model.__getitem__)] == top)
    return {"ranked_records": len(best_top), **rate(agree, "pairwise_accuracy"),
            "kendall_tau": sum(taus) / len(taus) if taus else None, **rate(best_top, "best_top")}
