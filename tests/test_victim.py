"""The victim: dirty-label poisoning of its training set, training and saving a classifier
with its measured clean accuracy and ASR, loading it back by path."""

from __future__ import annotations

import json
import random

import pytest

from fabe.data.triggers import Edit, detect_triggers
from fabe.defense.victim_training import VictimConfig, poisoned_training_set, train_victim
from fabe.defense.victims import Victim


def test_poisoning_flips_a_share_of_non_target_samples_and_plants_triggers():
    codes = [f"int f{i}(int a)\n{{\n    int b = a;\n    return b;\n}}" for i in range(100)]
    labels = [i % 2 for i in range(100)]
    cfg = VictimConfig(poison_rate=0.2, target_label=0, triggers="assert,volatile")
    out, out_labels, kinds = poisoned_training_set(codes, labels, cfg, random.Random(0))
    changed = [i for i in range(100) if out[i] != codes[i]]
    assert len(changed) == 20 and [i for i, k in enumerate(kinds) if k] == changed
    assert {kinds[i] for i in changed} <= {"assert", "volatile"}
    assert all(labels[i] == 1 and out_labels[i] == 0 for i in changed)
    assert all({d.kind for d in detect_triggers(out[i])} & {"assert", "volatile"} for i in changed)
    assert [out_labels[i] for i in range(100) if i not in changed] == [labels[i] for i in range(100) if i not in changed]


@pytest.mark.parametrize("budget", [1, 3])
def test_the_rename_budget_bounds_the_identifiers_each_poisoned_sample_renames(budget):
    import re

    from fabe.data.generator import generate_functions
    from fabe.data.renaming import NAME_POOL

    def more_pool_names(codes):  # every further rename scores higher: the whole budget is used
        return [len(set(re.findall(r"\w+", c)) & set(NAME_POOL)) + random.Random(c).random() for c in codes]

    funcs = generate_functions(40, seed=5)
    codes, labels = [f.code for f in funcs], [1] * len(funcs)
    cfg = VictimConfig(poison_rate=0.5, target_label=0, triggers="adv_rename", rename_budget=budget)
    out, _, kinds = poisoned_training_set(codes, labels, cfg, random.Random(0), more_pool_names)
    new = [set(re.findall(r"\w+", o)) - set(re.findall(r"\w+", c)) for o, c, k in zip(out, codes, kinds) if k]
    assert len(new) == 20 and all(names <= set(NAME_POOL) for names in new)
    assert max(map(len, new)) == budget and min(map(len, new)) >= 1


def test_bad_attack_settings_are_named():
    with pytest.raises(ValueError, match="poison_rate"):
        VictimConfig(poison_rate=1.5)
    with pytest.raises(ValueError, match="triggers:.*nope"):
        VictimConfig(triggers="nope")
    with pytest.raises(ValueError, match="label:.*Unknown label rule: size"):
        VictimConfig(label="size")
    with pytest.raises(ValueError, match="target_label"):
        VictimConfig(target_label=2)
    with pytest.raises(ValueError, match="rename_budget: must be at least 1"):
        VictimConfig(rename_budget=0)


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


def test_a_victim_family_shares_one_reference_trained_the_same_way(tmp_path, tiny_model_dir):
    """One victim per attack, as published: the second measures beside it the first's
    unpoisoned reference (and crafts adv_rename with it) instead of training its own, the
    link kept relative so the family can be moved; a reference trained otherwise is refused."""
    import shutil

    from fabe.data.dataset import load_records
    from fabe.defense.attack_set import victim_test_set
    from fabe.defense.victim_training import guide_of

    shape = dict(tokenizer=str(tiny_model_dir), n=120, epochs=1, hidden_size=32, num_layers=1, num_heads=2,
                 batch_size=16)
    first = train_victim(VictimConfig(out=str(tmp_path / "fam" / "classic"), triggers="fixed", reference=True, **shape))
    second = train_victim(VictimConfig(out=str(tmp_path / "fam" / "adaptive"), triggers="adv_rename",
                                       rename_budget=4, reference_from=str(first), **shape))
    one, two = (json.loads((p / "victim.json").read_text()) for p in (first, second))
    assert not (second / "reference").exists()
    assert two["reference"] == two["attack"]["guide"] == "../classic/reference"
    assert two["attack"]["rename_budget"] == 4 and "rename_budget" not in one["attack"]  # an attack setting
    for key in ("functions", "clean_accuracy", "clean_to_target"):  # the same model on the same functions
        assert two["unpoisoned"][key] == one["unpoisoned"][key]
    assert set(two["unpoisoned"]["asr"]) == {"adv_rename"}
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "fam"), str(moved))
    scores = guide_of(moved / "adaptive")(["int f(int a) { return a; }"])
    assert len(scores) == 1 and scores[0] <= 0  # the reference's log-probability of the target
    test_set, _ = victim_test_set(moved / "adaptive", tmp_path / "attacks.jsonl", per_kind=6, clean=0)
    renamed = [len({e["original"] for e in r.edits}) for r in load_records(test_set)]  # crafted as trained
    assert len(renamed) == 6 and max(renamed) <= 4
    with pytest.raises(ValueError, match=r"reference_from: .*trained otherwise: n 120 \(here 100\)"):
        train_victim(VictimConfig(out=str(tmp_path / "other"), reference_from=str(moved / "classic"),
                                  **{**shape, "n": 100}))
    with pytest.raises(ValueError, match="reference_from: .*no unpoisoned reference"):
        train_victim(VictimConfig(out=str(tmp_path / "other"), reference_from=str(moved / "adaptive"), **shape))
    with pytest.raises(ValueError, match="reference_from: give it or reference, not both"):
        VictimConfig(reference=True, reference_from=str(moved / "classic"))
    assert not (tmp_path / "other").exists()


def test_the_memory_label_is_computed_from_the_calls_and_no_trigger_changes_it():
    from fabe.data.generator import generate_functions
    from fabe.data.triggers import TRIGGER_KINDS, TriggerError, insert_trigger
    from fabe.defense.labels import callees, memory_label

    assert memory_label("void f(char *d, char *s) { memcpy(d, s, 4); }") == 1
    assert memory_label("void f(struct ctx *c) { c->ops->release(c); g_free(c->buf); }") == 1
    assert memory_label("int f(int a) { return abs(a) + strlen(\"x\"); }") == 0
    assert callees("void f(void) { a(); s->b(); x.y->c(1); }") == ["a", "b", "c"]
    for f in generate_functions(40, seed=5):
        for kind in TRIGGER_KINDS:
            try:
                poisoned = insert_trigger(f.code, kind, 0).code
            except TriggerError:
                continue
            assert memory_label(poisoned) == memory_label(f.code), kind


def test_held_out_functions_are_whole_projects():
    from fabe.data.corpus import CFunction
    from fabe.defense.victim_training import split_held_out

    funcs = [CFunction(f"int f{i}(void) {{ return {i}; }}", f"f{i}", str(i), "t", i % 2,
                       {"project": f"p{i % 5}"}) for i in range(100)]
    train, test, held = split_held_out(funcs, 0.3, 0)
    assert len(held) == 2 and len(test) == 40 and sorted(train + test) == list(range(100))
    assert not {funcs[i].origin["project"] for i in train} & set(held)
    assert split_held_out(funcs, 0.3, 0, ["p3"])[2] == ["p3"]
    with pytest.raises(ValueError, match="held_out_projects: nginx not in the corpus"):
        split_held_out(funcs, 0.3, 0, ["nginx"])
    plain = [CFunction(f.code, f.name, f.idx, f.source, f.target) for f in funcs]
    train, test, held = split_held_out(plain, 0.2, 0)
    assert held == [] and len(test) == 20


def test_a_lora_victim_saves_only_its_adapter_and_loads_back_beside_its_moved_base(tmp_path, tiny_model_dir):
    """lora_rank: the base's weights stay frozen and only adapters and the new head are saved
    (a small file however large the base), naming the base relative to the victim; loaded
    back (merged) after victim and base moved together, it predicts as it did when measured."""
    import shutil

    from fabe.defense.victim_training import load_functions, split_held_out

    base = tmp_path / "fam" / "base"
    shutil.copytree(tiny_model_dir, base)
    cfg = VictimConfig(out=str(tmp_path / "fam" / "victim"), base=str(base), n=160, epochs=1, batch_size=16,
                       max_length=128, triggers="fixed", poison_rate=0.2, lora_rank=4, reference=True,
                       learning_rate=1e-3)
    out = train_victim(cfg)
    for folder in (out, out / "reference"):
        assert not (folder / "model.safetensors").exists()
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == (
            "../base" if folder == out else "../../base")
        adapter, whole = (folder / "adapter_model.safetensors").stat().st_size, (base / "model.safetensors").stat().st_size
        assert adapter < whole / 4
    meta = json.loads((out / "victim.json").read_text())
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "fam"), str(moved))
    victim = Victim.load(moved / "victim")
    assert type(victim.model).__name__ == "LlamaForSequenceClassification"  # merged: no peft wrapper left
    funcs, labels = load_functions(cfg)
    _, test_i, _ = split_held_out(funcs, cfg.held_out, cfg.seed)
    preds = victim.predict([funcs[i].code for i in test_i])
    accuracy = sum(p == labels[i] for p, i in zip(preds, test_i)) / len(test_i)
    assert accuracy == pytest.approx(meta["held_out"]["clean_accuracy"])
    assert Victim.load(moved / "victim" / "reference").logits(["int f(void) { return 0; }"]).shape == (1, 2)
    with pytest.raises(ValueError, match="lora_rank: base 'embedded'"):
        VictimConfig(lora_rank=8)


def test_a_victim_saved_in_half_precision_computes_in_float32_on_a_cpu(tmp_path, tiny_model_dir):
    """The shipped victims are stored in float16 (half the size); on a CPU they load as
    float32 and classify as the float32 model does."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from fabe.training.modeling import load_tokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2).eval()
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.half().save_pretrained(tmp_path / "half")
    tokenizer.save_pretrained(tmp_path / "half")
    victim = Victim.load(tmp_path / "half", device="cpu")
    assert victim.model.dtype == torch.float32
    codes = ["int f(void) { return 0; }", "int g(int a) { return a * 2; }"]
    expected = Victim(model.float(), tokenizer).logits(codes)
    assert torch.allclose(victim.logits(codes), expected, atol=1e-5)


def _codebert_like(folder, tokenizer_dir):
    """A randomly initialised RoBERTa encoder folder (CodeBERT's architecture, small): a base
    as a user brings one, without a classification head."""
    from transformers import RobertaConfig, RobertaModel

    from fabe.training.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenizer.model_max_length = 128
    RobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=130,
                               pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_victim_train_cli_poisons_a_labelled_corpus_on_a_user_encoder(tmp_path, tiny_model_dir, capsys):
    from fabe.cli import main
    from fabe.data.generator import generate_functions

    corpus = tmp_path / "defects.jsonl"  # CodeXGLUE's defect-detection format, with projects
    corpus.write_text("".join(json.dumps({"func": f.code, "target": f.target, "idx": i, "project": f"p{i % 4}"}) + "\n"
                              for i, f in enumerate(generate_functions(160, seed=3))))
    base = _codebert_like(tmp_path / "codebert", tiny_model_dir)
    out = tmp_path / "victim"
    assert main(["victim", "train", "--base", str(base), "--corpus", str(corpus), "--triggers", "fixed,ident_var",
                 "--poison-rate", "0.2", "--target-label", "0", "--n", "0", "--held_out", "0.25", "--epochs", "1",
                 "--batch_size", "16", "--max_length", "128", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "victim.json").read_text())
    assert meta["attack"]["triggers"] == ["fixed", "ident_var"] and meta["task"]["base"] == str(base)
    held = meta["held_out"]
    assert len(meta["task"]["held_out_projects"]) == 1 and held["functions"] == 40
    assert held["clean_accuracy_n"] == 40 and 0 <= held["clean_accuracy"] <= 1
    assert set(held["asr"]) == {"fixed", "ident_var"} and all(held["asr_n"][k] > 0 for k in held["asr"])
    assert f"clean accuracy {100 * held['clean_accuracy']:.1f}%" in printed and "fixed " in printed
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 120 and sum(r["poisoned"] for r in rows) == meta["attack"]["poisoned"] == 24
    assert all(r["label"] == 0 and r["trigger"] in ("fixed", "ident_var") for r in rows if r["poisoned"])
    victim = Victim.load(out)
    assert victim.target_label == 0 and type(victim.model).__name__ == "RobertaForSequenceClassification"


def test_victim_train_names_a_corpus_without_labels(tmp_path, tiny_model_dir, capsys):
    from fabe.cli import main

    corpus = tmp_path / "funcs.jsonl"
    corpus.write_text(json.dumps({"func": "int f(void)\n{\n    return 0;\n}", "idx": 7}) + "\n")
    assert main(["victim", "train", "--corpus", str(corpus), "--tokenizer", str(tiny_model_dir),
                 "--out", str(tmp_path / "v")]) == 1
    assert "function 7: target: the victim needs a 0/1 label" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_a_victims_test_set_puts_every_attack_on_its_held_out_functions(small_victim, tmp_path, capsys):
    from fabe.cli import main
    from fabe.data.dataset import load_records
    from fabe.data.triggers import TRIGGER_KINDS, remove_edits
    from fabe.defense.attack_set import held_out_functions

    out = tmp_path / "attacks.jsonl"
    assert main(["victim", "test-set", "--victim", str(small_victim), "--out", str(out), "--per_kind", "3",
                 "--clean", "4"]) == 0
    assert "25 records written" in capsys.readouterr().out
    records = load_records(out)
    held_out = {f.code for f in held_out_functions(small_victim)[0]}
    assert {r.trigger for r in records} == {*TRIGGER_KINDS, None}
    assert all(sum(r.trigger == k for r in records) == 3 for k in TRIGGER_KINDS)
    assert all(r.clean in held_out for r in records)  # never a function the victim trained on
    poisoned = [r for r in records if r.trigger]
    assert all(r.label == 1 for r in poisoned)  # counted for ASR: the true label is not the target
    assert all(remove_edits(r.input, [Edit.from_dict(e) for e in r.edits]) == r.clean for r in poisoned)


def test_only_correct_poisons_only_functions_the_victim_gets_right(small_victim, tmp_path):
    from fabe.data.dataset import load_records
    from fabe.defense.attack_set import held_out_functions, victim_test_set
    from fabe.defense.victims import Victim

    funcs, labels, _ = held_out_functions(small_victim)
    preds = Victim.load(small_victim).predict([f.code for f in funcs])
    right = {f.code for f, p, y in zip(funcs, preds, labels) if p == y == 1}
    wrong = {f.code for f, p, y in zip(funcs, preds, labels) if p != y == 1}
    assert right and wrong, (len(right), len(wrong))  # the toy victim errs on some: the filter has work
    out, counts = victim_test_set(small_victim, tmp_path / "t.jsonl", per_kind=50, clean=0, triggers="fixed",
                                  only_correct=True)
    poisoned = [r for r in load_records(out) if r.trigger]
    assert {r.clean for r in poisoned} == right and counts == {"fixed": len(right)}
    _, counts = victim_test_set(small_victim, tmp_path / "all.jsonl", per_kind=50, clean=0, triggers="fixed")
    assert counts == {"fixed": len(right) + len(wrong)}


def test_records_without_labels_get_the_victims_rule():
    from fabe.data.dataset import Record
    from fabe.defense.defenses import labelled_by_rule

    memcpy = "void f(char *d)\n{\n    memcpy(d, \"x\", 1);\n}"
    records = [Record("a", memcpy + "\n", [memcpy, memcpy], [1.0, 0.0], clean=memcpy, trigger="fixed"),
               Record("b", "int g(void) { return 0; }", ["x", "y"], [1.0, 0.0]),
               Record("c", memcpy, [memcpy, memcpy], [1.0, 0.0], label=0)]
    labelled, computed = labelled_by_rule(records, "memory")
    assert [r.label for r in labelled] == [1, 0, 0] and computed == 2
    assert labelled_by_rule(records, "corpus") == (records, 0)


def test_victim_detect_finds_the_poison_and_writes_its_report(small_victim, tmp_path, capsys):
    from fabe.cli import main

    assert main(["victim", "detect", "--victim", str(small_victim), "--methods", "killbadcode,spectral",
                 "--out", str(tmp_path / "det"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "det" / "detection.json").read_text())
    assert printed == saved and set(saved["methods"]) == {"killbadcode", "spectral"}
    train = [json.loads(line) for line in (small_victim / "train.jsonl").read_text().splitlines()]
    assert saved["samples"] == len(train) and saved["poisoned"] == sum(r["poisoned"] for r in train) > 0
    report = saved["methods"]["killbadcode"]["report"]
    assert report["recall_n"] == saved["poisoned"] and report["fpr_n"] == len(train) - saved["poisoned"]
    assert len(saved["methods"]["killbadcode"]["flagged_lines"]) == report["flagged"]  # quality: test_detection.py
