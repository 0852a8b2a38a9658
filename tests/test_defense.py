"""Defenses: the front-door aggregation by hand, and the measurements on a victim that
ignores its input (ASR 0, CA unchanged by any defense)."""

from __future__ import annotations

import math

import pytest
import torch

from fabe.cleaning.cleaner import rank_candidates
from fabe.data.dataset import Record
from fabe.defense.defenses import DEFENSES, DefenseRun, defend, front_door, summarize_defense


def test_front_door_is_the_weighted_sum_of_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.5]])
    # 0.5*2 = 1.0 for class 0; 0.3*1 + 0.2*1.5 = 0.6 for class 1
    assert front_door(logits, [0.5, 0.3, 0.2]) == 0
    # 0.2*2 = 0.4 vs 0.4*1 + 0.4*1.5 = 1.0
    assert front_door(logits, [0.2, 0.4, 0.4]) == 1
    scores = [-0.1, -0.5, -0.2]
    weights = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
    expected = max(range(2), key=lambda c: sum(w * float(logits[k, c]) for k, w in enumerate(weights)))
    assert front_door(logits, weights) == expected


class ConstantVictim:
    """Always predicts class 1 (not the target), whatever the input."""

    def logits(self, codes):
        return torch.tensor([[0.0, 3.0]] * len(codes))

    def predict(self, codes):
        return self.logits(codes).argmax(-1).tolist()


class EchoCleaner:
    def clean(self, code, cfg=None):
        return rank_candidates([code, code + "\n"], [-0.1, -0.2], [True, True], source=code)


class DropNothing:
    def purify(self, code):
        return code


@pytest.fixture
def records():
    def rec(i, trigger, label):
        return Record(id=f"r{i}", input=f"int f{i}(void) {{ return {i}; }}", output=["a", "b"], score=[1, 0],
                      clean=f"int f{i}(void) {{ return {i}; }}", trigger=trigger, label=label)
    return [rec(0, "fixed", 1), rec(1, "fixed", 0), rec(2, "assert", 1), rec(3, None, 1), rec(4, None, 0),
            rec(5, "assert", None)]


def test_a_victim_that_ignores_its_input_has_no_attack_success_and_the_same_accuracy(records):
    run = DefenseRun(victim=ConstantVictim(), target=0, cleaner=EchoCleaner(),
                     purifiers={"naturalness": DropNothing(), "onion": DropNothing()})
    outcomes = defend(run, records, list(DEFENSES))
    summary = summarize_defense(outcomes, target=0)
    for name, result in summary.items():
        o = result["overall"]
        # ASR counts poisoned records whose truth is not the target: r0, r2, and r5 (its clean
        # version is predicted 1); CA counts unpoisoned labelled ones: r3 (right), r4 (wrong)
        assert (o["asr"], o["asr_n"], o["ca"], o["ca_n"]) == (0.0, 3, 0.5, 2), name
        assert o["asr_ci"] == pytest.approx([0.0, 0.5615], abs=5e-5), name  # Wilson of 0/3
        assert o["ca_ci"] == pytest.approx([0.0945, 0.9055], abs=5e-5), name  # and of 1/2
        assert set(result["by_trigger"]) == {"fixed", "assert"} and o["s_per_sample"] >= 0
    assert [r.counted_for for r in outcomes["none"]] == ["asr", "", "asr", "ca", "ca", "asr"]


def test_unknown_defenses_and_a_missing_cleaner_are_named(records):
    with pytest.raises(ValueError, match="Unknown defense: magic. Should be one of"):
        defend(DefenseRun(victim=ConstantVictim(), target=0), records, ["magic"])
    with pytest.raises(ValueError, match="need a cleaner"):
        defend(DefenseRun(victim=ConstantVictim(), target=0), records, ["fabe"])


DEFENSE_FIELDS = {"asr", "asr_n", "asr_ci", "ca", "ca_n", "ca_ci", "s_per_sample"}


def test_defend_json_fields_are_stable_and_results_are_saved(small_victim, tiny_model_dir, small_dataset, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "def"
    result = subprocess.run(
        [sys.executable, "-m", "fabe", "defend", "--victim", str(small_victim), "--cleaner", str(tiny_model_dir),
         "--data", str(small_dataset / "test.jsonl"), "--limit", "3", "--k", "2", "--out", str(out), "--json"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert set(data) == {"meta", "victim", "defenses", "out"}
    assert set(data["defenses"]) == set(DEFENSES)
    for res in data["defenses"].values():
        assert set(res) == {"overall", "by_trigger"} and set(res["overall"]) == DEFENSE_FIELDS
        assert all(set(v) == DEFENSE_FIELDS for v in res["by_trigger"].values())
    assert {"victim", "cleaner", "data", "records", "k", "target_label", "seconds", "thresholds"} <= set(data["meta"])
    assert set(data["victim"]) >= {"clean_accuracy", "asr"}
    assert json.loads((out / "defense.json").read_text())["defenses"] == data["defenses"]
    assert (out / "outcomes.csv").read_text().count("\n") == 1 + 5 * 3
    assert (out / "summary.csv").read_text().startswith("defense,scope,metric,rate,n,ci_low,ci_high\n")
