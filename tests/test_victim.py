"""The victim: dirty-label poisoning of its training set, training and saving a classifier
with its measured clean accuracy and ASR, loading it back by path."""

from __future__ import annotations

import json
import random

import pytest

from fabe.data.triggers import detect_triggers
from fabe.defense.victims import Victim, VictimConfig, poisoned_training_set, train_victim


def test_poisoning_flips_a_share_of_non_target_samples_and_plants_triggers():
    codes = [f"int f{i}(int a)\n{{\n    int b = a;\n    return b;\n}}" for i in range(100)]
    labels = [i % 2 for i in range(100)]
    cfg = VictimConfig(poison_rate=0.2, target_label=0, triggers="assert,volatile")
    out, out_labels, n = poisoned_training_set(codes, labels, cfg, random.Random(0))
    changed = [i for i in range(100) if out[i] != codes[i]]
    assert n == 20 and len(changed) == 20
    assert all(labels[i] == 1 and out_labels[i] == 0 for i in changed)
    assert all({d.kind for d in detect_triggers(out[i])} & {"assert", "volatile"} for i in changed)
    assert [out_labels[i] for i in range(100) if i not in changed] == [labels[i] for i in range(100) if i not in changed]


def test_bad_attack_settings_are_named():
    with pytest.raises(ValueError, match="poison_rate"):
        VictimConfig(poison_rate=1.5)
    with pytest.raises(ValueError, match="unknown kind"):
        poisoned_training_set(["int f(void) { return 0; }"] * 4, [1] * 4, VictimConfig(triggers="nope"),
                              random.Random(0))


def test_a_trained_victim_is_saved_measured_and_loads_back(tmp_path, tiny_model_dir):
    out = train_victim(VictimConfig(out=str(tmp_path / "victim"), tokenizer=str(tiny_model_dir), n=160, epochs=1, hidden_size=32, num_layers=1,
                                    num_heads=2, batch_size=16))
    meta = json.loads((out / "victim.json").read_text())
    assert meta["attack"]["target_label"] == 0 and meta["attack"]["poisoned"] > 0
    assert 0 <= meta["held_out"]["clean_accuracy"] <= 1 and len(meta["held_out"]["asr"]) == 7
    victim = Victim.load(out)
    assert victim.target_label == 0
    logits = victim.logits(["int f(void) { return 0; }", "int g(int a) { return a; }"])
    assert tuple(logits.shape) == (2, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["victim"]  # written aside, renamed into place
