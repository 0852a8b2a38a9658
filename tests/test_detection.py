"""Data-side poisoned-sample detection: KillBadCode finds planted triggers in generated
training sets, spectral signatures and activation clustering find a planted cluster in
synthetic representations, and `run_detection` runs all three on a victim folder."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from fabe.data.generator import generate_functions
from fabe.data.triggers import insert_trigger
from fabe.defense.detection import (
    DETECTORS,
    TrainingSetError,
    activation_clustering,
    detection_report,
    killbadcode,
    read_training_set,
    representations,
    run_detection,
    spectral_signature,
    trigger_tokens,
)


def poisoned_toy_set(kind: str, n: int = 300, rate: float = 0.1, seed: int = 3) -> tuple[list[str], list[bool]]:
    """`n` generated functions, `rate` of them carrying a `kind` trigger."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(n), int(rate * n)))
    funcs = generate_functions(n, seed=seed)
    codes = [insert_trigger(f.code, kind, rng).code if i in chosen else f.code for i, f in enumerate(funcs)]
    return codes, [i in chosen for i in range(n)]


@pytest.fixture(scope="module")
def reference() -> list[str]:
    return [f.code for f in generate_functions(300, seed=103)]  # other functions than the toy set's


@pytest.mark.parametrize("kind, trigger_key", [("fixed", "rand"), ("ident_var", "*_rb")])
def test_killbadcode_finds_planted_triggers(kind, trigger_key, reference):
    codes, poisoned = poisoned_toy_set(kind)
    found = killbadcode(codes, reference)
    report = detection_report(found.flagged, poisoned, [kind if p else None for p in poisoned], found.scores)
    # measured: recall 1.0, FPR 0.078 (fixed) / 0.081 (ident_var), AUROC 1.0
    assert report["recall"] >= 0.9 and report["fpr"] <= 0.2 and report["auroc"] >= 0.95, report
    assert report["by_trigger"][kind]["recall_n"] == sum(poisoned)
    assert trigger_key in [t["token"] for t in found.details["suspicious_tokens"][:2]]


def test_killbadcode_without_poison_flags_about_its_calibrated_share(reference):
    codes = [f.code for f in generate_functions(300, seed=3)]
    found = killbadcode(codes, reference, fpr=0.1)
    assert 0.03 <= sum(found.flagged) / len(codes) <= 0.2  # measured 0.083: about the calibrated share, by design


def test_killbadcode_skips_a_suspicious_token_common_in_clean_code_and_takes_the_next():
    """Real C: `++` led the suspicion and half of clean functions hold it; a threshold on the
    score flagged nothing. The trigger keys skip it, and stop where clean code would be
    flagged beyond the FPR."""
    reference = [{"++", "x"}] * 50 + [{"rand"}] * 5 + [{"v"}] * 8 + [{"y"}] * 37
    taken, skipped = trigger_tokens(["++", "rand", "v", "y"], reference, fpr=0.1)
    assert taken == ["rand"] and skipped == ["++", "v", "y"]  # rand flags 5%, with v 13%


def test_killbadcode_refuses_a_small_reference():
    with pytest.raises(ValueError, match="clean_reference"):
        killbadcode(["int f(void) { return 0; }"], ["int g(void) { return 1; }"] * 5)


def synthetic(seed: int, poison: int = 30, shift: float = 8.0, dim: int = 32):
    """Representations: target class 0 = a unit Gaussian blob of 270 clean samples plus
    `poison` planted ones shifted along one direction; class 1 = 300 clean samples elsewhere.
    At a shift of 6 standard deviations activation clustering split the blob instead in 2 of
    10 seeds (spectral signatures still found every planted sample); at 8 in none."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    x = np.vstack([rng.normal(size=(270, dim)), rng.normal(size=(poison, dim)) + shift * direction,
                   rng.normal(size=(300, dim)) + 4.0 * np.eye(dim)[1]])
    labels = [0] * (270 + poison) + [1] * 300
    poisoned = [False] * 270 + [True] * poison + [False] * 300
    return x, labels, poisoned


@pytest.mark.parametrize("seed", [0, 1])
def test_spectral_and_activation_clustering_find_a_planted_cluster(seed):
    x, labels, poisoned = synthetic(seed)
    kinds = ["fixed" if p else None for p in poisoned]
    every = detection_report(spectral_signature(x, labels).flagged, poisoned, kinds)
    target = spectral_signature(x, labels, classes=[0])
    ac = activation_clustering(x, labels)
    on_target = detection_report(target.flagged, poisoned, kinds, target.scores)
    clustered = detection_report(ac.flagged, poisoned, kinds, ac.scores)
    # measured: spectral recall 1.0 at FPR 0.109 (every class: 15% of each removed) and 0.028
    # (target class only); activation clustering recall 1.0, FPR 0.0, smaller cluster 10%
    assert every["recall"] >= 0.9 and every["fpr"] <= 0.15, every
    assert on_target["recall"] >= 0.9 and on_target["fpr"] <= 0.05 and on_target["auroc"] >= 0.99, on_target
    assert clustered["recall"] >= 0.9 and clustered["fpr"] <= 0.02, clustered
    assert ac.details["per_class"][1]["flagged"] == 0  # the clean class is left alone


def test_without_poison_clustering_flags_nothing_and_spectral_its_budget():
    x, labels, _ = synthetic(0, poison=0)
    ac = activation_clustering(x, labels)
    assert sum(ac.flagged) == 0  # both splits near half and half (measured smaller shares 0.36, 0.48)
    spectral = spectral_signature(x, labels, eps=0.1)
    assert sum(spectral.flagged) == 41 + 45  # ceil(1.5 * 0.1 * n) of each class, poison or not


def test_report_counts_and_intervals():
    report = detection_report([True, True, False, True], [True, True, True, False], ["fixed", "grammar", "fixed", None],
                              [0.9, 0.8, 0.1, 0.7])
    assert (report["recall"], report["recall_n"], report["fpr"], report["fpr_n"]) == (0.6667, 3, 1.0, 1)
    assert report["precision"] == 0.6667 and report["flagged"] == 3
    assert report["by_trigger"]["fixed"]["recall"] == 0.5 and report["recall_ci"][0] < 0.6667 < report["recall_ci"][1]
    assert report["auroc"] == 0.6667
    assert detection_report([False], [False], [None], [0.0])["auroc"] is None


@pytest.fixture(scope="module")
def victim_dir(tmp_path_factory, tiny_model_dir):
    """A randomly initialised tiny BERT victim (as `train_victim` makes one) with a small
    poisoned train.jsonl."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from fabe.training.modeling import load_tokenizer

    folder = tmp_path_factory.mktemp("victim")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.model_max_length = 256
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, num_labels=2))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "victim.json").write_text(json.dumps({"attack": {"target_label": 0, "poison_rate": 0.1}}))
    rng = random.Random(0)
    with (folder / "train.jsonl").open("w") as f:
        for i, fn in enumerate(generate_functions(40, seed=5)):
            poisoned = i % 10 == 0
            code = insert_trigger(fn.code, "fixed", rng).code if poisoned else fn.code
            f.write(json.dumps({"code": code, "label": 0 if poisoned else fn.target, "poisoned": poisoned,
                                "trigger": "fixed" if poisoned else None}) + "\n")
    return folder


def test_representations_are_one_hidden_vector_per_code(victim_dir):
    from fabe.defense.victims import Victim

    victim = Victim.load(victim_dir)
    codes = read_training_set(victim_dir / "train.jsonl").codes[:5]
    features = representations(victim, codes, batch_size=2)
    assert features.shape == (5, 32) and features.dtype == np.float32
    assert np.allclose(features[0], representations(victim, codes[:1])[0], atol=1e-5)  # padding does not leak
    assert representations(victim, []).shape == (0, 32)


def test_a_decoder_victims_representation_is_what_its_head_reads(tiny_model_dir):
    """A causal LM classifier (the shipped victims' kind) pools its last non-padding token:
    its `score` head on the representations gives its logits, in a batch padded to the longest."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from fabe.defense.victims import Victim
    from fabe.training.modeling import load_tokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2).eval()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model.config.pad_token_id = tokenizer.pad_token_id
    victim = Victim(model, tokenizer)
    codes = [fn.code for fn in generate_functions(4, seed=3)] + ["int f(void) { return 0; }"]
    features = representations(victim, codes, batch_size=5)
    logits = model.score(torch.from_numpy(features)).detach()
    assert torch.allclose(logits, victim.logits(codes, batch_size=5), atol=1e-4)
    first = representations(victim, codes[:1])  # the same function alone: no padding
    assert np.allclose(features[0], first[0], atol=1e-4) and not np.allclose(features[0], features[4], atol=1e-2)


def test_run_detection_writes_every_methods_report(victim_dir, tmp_path):
    calls = []
    result, folder = run_detection(victim_dir, list(DETECTORS), [f.code for f in generate_functions(60, seed=7)],
                                   out=tmp_path / "det", progress=lambda d, t: calls.append((d, t)))
    written = json.loads((folder / "detection.json").read_text())
    assert folder == tmp_path / "det" and written == json.loads(json.dumps(result))
    assert written["samples"] == 40 and written["poisoned"] == 4 and written["target_label"] == 0
    for name in DETECTORS:
        report = written["methods"][name]["report"]
        assert report["recall_n"] == 4 and report["fpr_n"] == 36 and "auroc" in report
        assert written["methods"][name]["seconds"] >= 0 and "params" in written["methods"][name]
    assert written["representations"]["dim"] == 32
    assert calls[-1][0] == calls[-1][1] == 40 + 40 + 20  # representations, then KillBadCode (+ its calibration)
    limited, _ = run_detection(victim_dir, ["spectral"], [], limit=10)
    assert limited["samples"] == 10 and (victim_dir / "detection" / "detection.json").exists()


def test_run_detection_refuses_unknown_methods(victim_dir):
    with pytest.raises(KeyError, match="Unknown detection method: nope"):
        run_detection(victim_dir, ["nope"], [])


@pytest.mark.parametrize("line, field", [
    ('{"code": "int f;", "label": "1", "poisoned": false, "trigger": null}', "label"),
    ('{"code": "int f;", "label": 1, "trigger": null}', "poisoned"),
    ('{"code": "int f;", "label": 1, "poisoned": false, "trigger": "fixed"}', "trigger"),
    ('{"code": "int f;", "label": 1, "poisoned": false', "json"),
])
def test_a_malformed_training_line_is_refused_with_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "train.jsonl"
    good = '{"code": "int g;", "label": 0, "poisoned": true, "trigger": "fixed"}'
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(TrainingSetError, match=rf"{path}:2: {field}:"):
        read_training_set(path)
