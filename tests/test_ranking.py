"""Ranking quality: Kendall's tau-b as scipy defines it, pairwise accuracy and the best
candidate's top rate on known orders, and the model's candidate scores from packed batches
equal to scoring each prompt + candidate alone."""

from __future__ import annotations

import pytest
import torch

from fabe.data.dataset import Record, load_records
from fabe.evaluation.ranking import candidate_scores, kendall_tau_b, ranking_quality


def test_kendall_tau_b_on_known_orders():
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9128709)  # scipy.stats.kendalltau
    assert kendall_tau_b([1, 1], [1, 2]) is None


def _rec(scores: list[float]) -> Record:
    return Record(id="r", input="int f(void) { return 0; }", output=[f"c{i}" for i in range(len(scores))],
                  score=scores)


def test_ranking_quality_of_a_perfect_and_a_reversed_ranker():
    records = [_rec([0.9, 0.5, 0.1]), _rec([0.2, 0.8, 0.8]), _rec([0.5, 0.5])]  # the last has no order
    perfect = ranking_quality(records, [[3.0, 2.0, 1.0], [1.0, 2.0, 2.0], [0.0, 0.0]])
    assert perfect["ranked_records"] == 2 and perfect["pairwise_accuracy"] == 1.0
    assert perfect["pairwise_accuracy_n"] == 3 + 2 and perfect["best_top"] == 1.0
    reverse = ranking_quality(records, [[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [0.0, 0.0]])
    assert reverse["pairwise_accuracy"] == 0.0 and reverse["best_top"] == 0.0
    assert reverse["kendall_tau"] == pytest.approx((-1 - 2 / 6 ** 0.5) / 2)  # the tied pair counts as tau-b says
    assert ranking_quality([], [])["pairwise_accuracy"] is None


def test_candidate_scores_equal_scoring_each_candidate_alone(tiny_model_dir, small_dataset):
    from fabe.cleaning.cleaner import Cleaner
    from fabe.training.encoding import prompt_ids, target_ids

    cleaner = Cleaner.load(tiny_model_dir, device="cpu")
    records = load_records(small_dataset / "test.jsonl")[:3]
    got = candidate_scores(cleaner, records, batch_size=2)
    for record, scores in zip(records, got):
        assert len(scores) == len(record.output)
        prompt = prompt_ids(cleaner.tokenizer, record.input)
        for code, score in zip(record.output, scores):
            target = target_ids(cleaner.tokenizer, code)
            ids = torch.tensor([prompt + target])
            with torch.no_grad():
                logp = torch.log_softmax(cleaner.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
            alone = logp.gather(-1, torch.tensor(target)[:, None]).mean().item()
            assert score == pytest.approx(alone, abs=1e-4)
