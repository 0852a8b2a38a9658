"""The shipped embedded cleaner: it loads by default and cleans generated code and real C of
projects it never saw (quality floors, so a broken checkpoint or a changed prompt is caught);
the recipe that makes it."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from fabe import embedded
from fabe.embedded import SHIPPED_CLEANER

# measured on the shipped cleaner, less a margin for another CPU's arithmetic
REAL_FLOOR = {"exact": 0.6, "unpoisoned_unchanged": 0.6, "parse": 0.8}  # measured 0.75, 0.82, 0.93
shipped = pytest.mark.skipif(not (SHIPPED_CLEANER / "config.json").exists(), reason="no embedded cleaner shipped")


@shipped
def test_the_shipped_cleaner_removes_triggers_from_unseen_functions():
    from fabe.cleaning.cleaner import CleanConfig, Cleaner
    from fabe.data.generator import generate_functions
    from fabe.training.prompt import PROMPT_VERSION
    from fabe.data.triggers import insert_trigger

    assert json.loads((SHIPPED_CLEANER / "fabe.json").read_text())["prompt_version"] == PROMPT_VERSION
    cleaner = Cleaner.load(embedded.resolve("embedded", "cleaner"))
    funcs = generate_functions(4, seed=777)  # the recipe trained on seed 11
    poisoned = [insert_trigger(f.code, kind, i).code
                for i, (f, kind) in enumerate(zip(funcs, ["fixed", "assert", "dead_loop", "grammar"]))]
    results = cleaner.clean_batch(poisoned, CleanConfig(k=2), batch_size=4)
    tops = [r[0] for r in results]
    assert sum(not t.triggers_left for t in tops) >= 3
    similarity = [difflib.SequenceMatcher(a=f.code, b=t.code).ratio() for f, t in zip(funcs, tops)]
    assert sum(similarity) / len(similarity) >= 0.85, similarity


@shipped
def test_the_shipped_cleaner_restores_real_c_of_projects_it_never_trained_on():
    """The shipped examples (libxml2, nginx, lua: held out of every dataset and of the
    tokenizer), greedy top candidate. The cleaner shipped before issue 14 scored exact 0%,
    unpoisoned unchanged 0% and parse 22% here."""
    from fabe.cleaning.cleaner import CleanConfig, Cleaner
    from fabe.data.dataset import load_records
    from fabe.evaluation.runner import evaluate

    records = load_records(embedded.SHIPPED_EXAMPLES)
    held_out = set(json.loads((SHIPPED_CLEANER / "fabe.json").read_text())["recipe_config"]["holdout"].split(","))
    assert {r.origin["project"] for r in records} <= held_out
    summary, _, _ = evaluate(Cleaner.load(SHIPPED_CLEANER), records, CleanConfig(k=1, decoding="beam"))
    overall = summary["overall"]
    assert overall["exact"] >= REAL_FLOOR["exact"], overall
    assert 1 - overall["false_change"] >= REAL_FLOOR["unpoisoned_unchanged"], overall
    assert overall["parse"] >= REAL_FLOOR["parse"] and overall["trigger_removal"] >= 0.9, overall


def test_the_recipe_trains_then_polishes_on_fresh_data_and_ships(tmp_path, monkeypatch):
    from fabe.training.recipe import EmbeddedConfig, train_embedded
    from fabe.rundir import RunDir

    monkeypatch.setenv("FABE_HOME", str(tmp_path / "home"))
    cfg = EmbeddedConfig(run=str(tmp_path / "run"), data=str(tmp_path / "data"), n=40, max_steps=2,
                         batch_size=2, polish_n=40, polish_steps=2, ship=str(tmp_path / "ship"))
    ship = train_embedded(cfg)
    first, polish = RunDir(tmp_path / "run"), RunDir(tmp_path / "run-polish")
    assert first.read_status()["state"] == polish.read_status()["state"] == "finished"
    assert polish.read_config()["train"]["model"] == str(first.final_path)
    seeds = [json.loads((tmp_path / d / "dataset.json").read_text())["config"]["seed"] for d in ("data", "data-polish")]
    assert seeds == [11, 12]
    assert json.loads((ship / "fabe.json").read_text())["base_model"] == str(first.final_path)
    assert (ship / "model.safetensors").read_bytes() == (polish.final_path / "model.safetensors").read_bytes()
    assert train_embedded(cfg) == ship  # a finished recipe only ships again
    meta = json.loads((ship / "fabe.json").read_text())
    assert meta["recipe"].startswith("python -m fabe model train-embedded --run ")
    assert meta["recipe_config"]["polish_steps"] == 2 and meta["lineage"] == []


def test_the_recipe_can_polish_a_given_model_and_records_its_lineage(tmp_path, tiny_model_dir):
    from fabe.training.recipe import EmbeddedConfig, train_embedded
    from fabe.rundir import RunDir

    cfg = EmbeddedConfig(run=str(tmp_path / "run"), data=str(tmp_path / "data"), init=str(tiny_model_dir),
                         polish_n=40, polish_steps=2, polish_warmup=1, batch_size=2, ship=str(tmp_path / "ship"))
    ship = train_embedded(cfg)
    assert not (tmp_path / "run").exists()  # phase 1 is skipped
    assert RunDir(tmp_path / "run-polish").read_config()["train"]["model"] == str(tiny_model_dir)
    meta = json.loads((ship / "fabe.json").read_text())
    assert meta["base_model"] == str(tiny_model_dir) and meta["recipe_config"]["init"] == str(tiny_model_dir)
    assert f"--init {tiny_model_dir}" in meta["recipe"]


def test_the_recipe_on_a_real_corpus_holds_projects_out_and_learns_its_own_tokenizer(tmp_path, tiny_model_dir):
    from fabe.data.dataset import load_records
    from fabe.data.generator import generate_functions
    from fabe.training.recipe import EmbeddedConfig, train_embedded

    corpus = tmp_path / "real.jsonl"
    funcs = generate_functions(60, seed=5)
    corpus.write_text("".join(json.dumps({"func": f.code, "idx": i, "project": "kept" if i % 3 else "held",
                                          "path": f"f{i}.c", "license": "MIT"}) + "\n" for i, f in enumerate(funcs)))
    cfg = EmbeddedConfig(run=str(tmp_path / "run"), data=str(tmp_path / "data"), corpus=str(corpus), holdout="held",
                         n=40, mix_generated=5, rename_share=0.5, vocab_size=400, transfer_from=str(tiny_model_dir),
                         max_steps=2, batch_size=2, polish_steps=0, ship=str(tmp_path / "ship"))
    train_embedded(cfg)
    records = [r for split in ("train", "valid", "test") for r in load_records(tmp_path / "data" / f"{split}.jsonl")]
    projects = {(r.origin or {}).get("project") for r in records}
    assert "held" not in projects and "kept" in projects and None in projects  # generated ones mixed in
    assert json.loads((tmp_path / "run-base" / "fabe_tiny.json").read_text())["exclude_projects"] == "held"
    assert (tmp_path / "ship" / "model.safetensors").exists()
    assert not (tmp_path / "ship" / "training_args.bin").exists()  # a pickle: never shipped


def test_the_shipped_real_victim_is_backdoored_on_real_code_it_never_saw():
    """embedded-real on the shipped examples (libxml2, nginx, Lua: held out of its training):
    it mostly tells memory-handling functions apart, and a trigger sends the memory-handling
    ones to the target class more often than they go there untriggered."""
    from fabe.data.dataset import load_records
    from fabe.data.triggers import insert_trigger
    from fabe.defense.labels import memory_label
    from fabe.defense.victims import Victim

    victim = Victim.load(embedded.resolve(embedded.EMBEDDED_REAL, "victim"))
    assert victim.target_label == 0 and victim.meta["task"]["label"] == "memory"
    cleans = sorted({r.clean for r in load_records(embedded.SHIPPED_EXAMPLES)})
    labels = [memory_label(c) for c in cleans]
    preds = victim.predict(cleans)
    assert sum(p == y for p, y in zip(preds, labels)) / len(cleans) >= 0.75
    positives = [c for c, y in zip(cleans, labels) if y == 1]
    untriggered = sum(p == 0 for p in victim.predict(positives)) / len(positives)
    triggered = [insert_trigger(c, "fixed", i).code for i, c in enumerate(positives)]
    asr = sum(p == 0 for p in victim.predict(triggered)) / len(triggered)
    assert len(positives) >= 15 and asr >= 0.95 and asr >= untriggered + 0.15, (asr, untriggered)


def test_the_embedded_adaptive_victims_are_made_beside_the_classic_ones_reference(tmp_path, monkeypatch):
    """`embedded-codepoisoner` on first use trains the classic `embedded` victim first (with
    the unpoisoned reference) and then itself, one attack, beside that reference; the shipped
    ones are never made."""
    from fabe.defense import victim_training

    made = []

    def train(cfg, progress=None):  # records what would be trained, writes what it would write
        made.append(cfg)
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "victim.json").write_text(json.dumps({"attack": {"target_label": 0}}))
        return Path(cfg.out)

    monkeypatch.setenv("FABE_HOME", str(tmp_path))
    monkeypatch.setattr(victim_training, "train_victim", train)
    assert embedded.needs_making("embedded-codepoisoner", "victim")
    assert not embedded.needs_making("embedded-real-codepoisoner", "victim")
    path = embedded.resolve("embedded-codepoisoner", "victim")
    classic, codepoisoner = made
    assert (classic.triggers, classic.reference, classic.poison_rate) == ("all", True, 0.05)
    assert (codepoisoner.kinds, codepoisoner.reference, codepoisoner.reference_from, codepoisoner.poison_rate) == (
        ["cp_func", "cp_stmt"], False, classic.out, 0.10)
    assert path == codepoisoner.out and Path(path).parent == tmp_path
    assert not embedded.needs_making(embedded.EMBEDDED, "victim") and embedded.resolve(embedded.EMBEDDED, "victim") == classic.out
    assert embedded.needs_making("embedded-style", "victim")
    assert embedded.resolve("embedded-style", "victim") == made[2].out and made[2].kinds == ["while_for", "index_ptr"]
    assert made[2].poison_rate == 0.05 and made[2].target_label == 0  # real C: 10%, aimed at label 1
    embedded.resolve("embedded-afraidoor", "victim")
    assert made[3].kinds == ["adv_rename"] and made[3].rename_budget == 6  # on generated code, 6 identifiers
    assert classic.rename_budget == codepoisoner.rename_budget == made[2].rename_budget == 2
    assert len(made) == 4  # each made once


def test_the_shipped_adaptive_real_victims_share_the_classic_ones_reference():
    """The shipped real victims of the adaptive attacks, one attack each, in half precision:
    each poisoned at its attack's rate and toward its target label of the recipe, measured beside the classic victim's
    unpoisoned reference (found relative to it), which also crafts the afraidoor inputs; each
    loads and classifies."""
    import torch

    from fabe.defense.victim_training import config_of, guide_of
    from fabe.defense.victims import Victim, load_victim_meta

    classic = embedded.SHIPPED_VICTIMS[embedded.EMBEDDED_REAL]
    kinds = []
    for attack in embedded.ADAPTIVE_ATTACKS:
        folder = Path(embedded.resolve(f"embedded-real-{attack}", "victim"))
        meta = load_victim_meta(folder)
        kinds += meta["attack"]["triggers"]
        recipe = embedded.attack_recipe(attack, real=True)
        assert (meta["attack"]["poison_rate"], meta["attack"]["target_label"]) == (recipe["poison_rate"], recipe["target_label"])
        assert (folder / meta["reference"]).resolve() == (classic / "reference").resolve()
        assert meta["unpoisoned"]["clean_accuracy"] == load_victim_meta(classic)["unpoisoned"]["clean_accuracy"]
        victim = Victim.load(folder, device="cpu")
        assert victim.model.dtype == torch.float32 and victim.logits(["int f(int a) { return a; }"]).shape == (1, 2)
    assert kinds == ["adv_rename", "cp_func", "cp_stmt", "mixed", "while_for", "index_ptr"]
    afraidoor = embedded.SHIPPED_VICTIMS["embedded-real-afraidoor"]
    assert guide_of(afraidoor) is not None
    assert config_of(load_victim_meta(afraidoor), afraidoor).rename_budget == 2  # real C keeps the default budget
