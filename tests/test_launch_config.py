"""One config from the form to the trainer. For every preset, the Train form with every
option changed from the preset's value (to the dataclass default wherever the preset
differs from it: the values a diff against defaults used to lose) launches a run whose
Trainer, inside the launched process, is built with exactly those values; a resume keeps
them. A probe put into the launched process (a `sitecustomize` on its PYTHONPATH) records
what the Trainer holds when `train()` starts: its TrainingArguments, its FABE config, the
model's LoRA and checkpointing state, and the encoded data."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from helpers import served_app, wait_for

from fabe.data.dataset import load_records
from fabe.rundir import RunDir
from fabe.runs import manager as runs
from fabe.training.config import FIELDS, PRESETS, TrainConfig, config_from_dict, preset_values, resolve_config

# Set elsewhere (the preset picker, the run name), or not changeable on this machine: both
# need a package that is not installed here (the launch refuses them; see test_runs.py).
NOT_CHANGED = {"deepspeed", "report_to", "out", "preset"}
# Options whose dataclass default would not do here (no dataset, a model to download, an
# epoch of training, no LoRA on the tiny model): their own value comes first.
OWN_FIRST = ("data", "model", "max_steps", "finetune")

PROBE = textwrap.dedent('''
    """Test probe: when fabe.training.trainer is imported, wrap FabeTrainer.train to record
    what the trainer holds into $FABE_PROBE_OUT/<run>.jsonl, then train as usual."""
    import dataclasses, importlib.abc, importlib.util, json, os, sys
    from pathlib import Path

    def _patch(module):
        real = module.FabeTrainer.train

        def train(self, *args, **kwargs):
            model = self.model
            peft = getattr(model, "peft_config", {}).get("default")
            inner = model.get_base_model() if peft else model
            rows = [len(s.prompt) + len(t) for s in self.train_dataset.samples for t in s.targets]
            probe = {"args": json.loads(self.args.to_json_string()), "fabe": dataclasses.asdict(self.fabe),
                     "lora": None if peft is None else {"r": peft.r, "alpha": peft.lora_alpha,
                                                        "dropout": peft.lora_dropout,
                                                        "targets": sorted(peft.target_modules)},
                     "checkpointing": inner.is_activation_checkpointing, "longest_row": max(rows),
                     "attention": inner.config._attn_implementation,
                     "train_records": len(self.train_dataset),
                     "eval_records": None if self.eval_dataset is None else len(self.eval_dataset),
                     "sampler": type(self._get_train_sampler()).__name__,
                     "collator": {"mode": self.data_collator.mode, "packing": self.data_collator.packing,
                                  "capacity": self.data_collator.capacity},
                     "rank_fn": getattr(self.rank_fn, "func", self.rank_fn).__name__,
                     "margin": getattr(self.rank_fn, "keywords", {}).get("margin")}
            out = Path(os.environ["FABE_PROBE_OUT"]) / (Path(self.args.output_dir).name + ".jsonl")
            with out.open("a") as f:
                f.write(json.dumps(probe) + "\\n")
            return real(self, *args, **kwargs)

        module.FabeTrainer.train = train

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "fabe.training.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    if os.environ.get("FABE_PROBE_OUT"):
        sys.meta_path.insert(0, _Finder())
''')


def changed_values(preset: str, data: Path, model: Path) -> dict:
    """Every option with a value other than the preset's: the dataclass default where the
    preset has another value, else a value of its own (valid together, quick on a CPU)."""
    base = preset_values(preset)
    own = dict(data=str(data), model=str(model), max_length=768, group_by_length=False, eval_limit=3,
               finetune="lora", lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_targets="q_proj,v_proj",
               precision="fp32", gradient_checkpointing=True, trust_remote_code=True, mode="simple", alpha=0.5,
               beta=0.0, rank_loss="margin", margin=0.2, learning_rate=2e-3, lr_scheduler="linear", warmup_steps=7,
               weight_decay=0.01, num_train_epochs=2.0, max_steps=1, batch_size=2, gradient_accumulation_steps=2,
               seed=5, logging_steps=3, eval_steps=50, save_steps=40, save_total_limit=2, packing=False,
               attention="sdpa")
    values = {}
    for name, value in own.items():
        order = (value, FIELDS[name].default) if name in OWN_FIRST else (FIELDS[name].default, value)
        values[name] = next(v for v in order if v != base[name])
    assert set(values) == set(FIELDS) - NOT_CHANGED, "a new option needs a changed value here"
    return values


def seen_by_trainer(probe: dict) -> dict:
    """The options as the launched trainer applies them."""
    args, lora = probe["args"], probe["lora"] or {}
    return {"learning_rate": args["learning_rate"], "lr_scheduler": args["lr_scheduler_type"],
            "warmup_steps": args["warmup_steps"], "weight_decay": args["weight_decay"],
            "num_train_epochs": args["num_train_epochs"], "max_steps": args["max_steps"],
            "batch_size": args["per_device_train_batch_size"],
            "gradient_accumulation_steps": args["gradient_accumulation_steps"], "seed": args["seed"],
            "logging_steps": args["logging_steps"], "eval_steps": args["eval_steps"],
            "save_steps": args["save_steps"], "save_total_limit": args["save_total_limit"],
            "gradient_checkpointing": probe["checkpointing"], "mode": probe["collator"]["mode"],
            "lora_r": lora.get("r"), "lora_alpha": lora.get("alpha"), "lora_dropout": lora.get("dropout"),
            "lora_targets": ",".join(lora.get("targets", [])) or None,
            "group_by_length": probe["sampler"] == "LengthGroupedSampler", "attention": probe["attention"]}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    probe_dir = tmp_path_factory.mktemp("probe")
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "FABE_PROBE_OUT")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe_dir), old["PYTHONPATH"]]))
    os.environ["FABE_PROBE_OUT"] = str(probe_dir)
    runs_dir = tmp_path_factory.mktemp("runs")
    with served_app(runs_dir, [tmp_path_factory.getbasetemp()]) as client:
        yield client, runs_dir, probe_dir
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _probes(probe_dir: Path, run_id: str, n: int) -> list[dict]:
    path = probe_dir / f"{run_id}.jsonl"
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= n)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _finished(run: RunDir, resumed: bool = False) -> bool:
    state = runs.reconcile(run).get("state")
    return state == "failed" or (state == "finished" and (not resumed or "resumed_at" in run.read_status()))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_trainer_of_a_launched_run_sees_every_value_of_the_form_and_a_resume_keeps_them(
        app_client, preset, small_dataset, tiny_model_dir):
    client, runs_dir, probe_dir = app_client
    values = changed_values(preset, small_dataset, tiny_model_dir)
    assert [n for n in values if values[n] == preset_values(preset)[n]] == []
    form = {**preset_values(preset), **values}
    run_id = f"all-{preset}"
    message = client.predict(**{n: form[n] for n in FIELDS if n != "out"}, gpus=[], run_name=run_id,
                             api_name="/launch")[0]
    assert message.startswith(f"Launched **{run_id}**"), message
    run = RunDir(runs_dir / run_id)
    wait_for(lambda: _finished(run))
    assert run.read_status()["state"] == "finished", runs.log_tail(run)
    runs.resume(run.path)  # from its last checkpoint, with max_steps reached: no more steps
    wait_for(lambda: _finished(run, resumed=True))
    assert run.read_status()["state"] == "finished", runs.log_tail(run)
    expected = {**form, "out": str(run.path)}
    n_valid = len(load_records(small_dataset / "valid.jsonl"))
    for probe in _probes(probe_dir, run_id, 2):  # the launch, then the resume
        assert probe["fabe"] == expected  # the trainer's own FABE config, every option
        want = {n: values[n] for n in seen_by_trainer(probe)}
        if values["finetune"] != "lora":  # the tiny model under auto: full fine-tuning, no LoRA
            want.update(lora_r=None, lora_alpha=None, lora_dropout=None, lora_targets=None)
        assert seen_by_trainer(probe) == want
        assert probe["eval_records"] == (values["eval_limit"] or n_valid)
        assert probe["train_records"] == len(load_records(small_dataset / "train.jsonl"))
        assert probe["longest_row"] <= values["max_length"]
        assert probe["args"]["bf16"] is False and probe["args"]["fp16"] is False  # fp32 on a CPU either way
        assert probe["collator"]["packing"] is False and probe["collator"]["capacity"] == values["max_length"]
        assert (probe["rank_fn"], probe["margin"]) == ("margin_loss", values["margin"])
    config = run.read_config()
    assert config["train"] == expected and set(config) == {"train", "launch", "provenance"}
    assert sorted(p.name for p in run.path.iterdir() if p.suffix in (".json", ".yaml", ".yml")) == [
        "config.json", "status.json"]  # one copy of the config


def test_the_reported_reproduction_keeps_every_flag():
    argv = ["--preset", "deepseek-1.3b", "--batch_size", "8", "--gradient_checkpointing", "False",
            "--max_length", "1024", "--learning_rate", "1e-3"]
    cfg = resolve_config(argv)
    assert (cfg.batch_size, cfg.gradient_checkpointing, cfg.max_length, cfg.learning_rate) == (8, False, 1024, 1e-3)
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict())), "config.json") == cfg  # through the file


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_resolved_config_is_rebuilt_exactly_from_its_file_and_nothing_else(preset):
    cfg = TrainConfig(**{**preset_values(preset), "data": "d"})
    assert config_from_dict(cfg.to_dict(), "config.json") == cfg
    partial = cfg.to_dict()
    del partial["batch_size"]
    with pytest.raises(ValueError, match=r"config.json: missing options \['batch_size'\]"):
        config_from_dict(partial, "config.json")


def test_the_form_offers_every_option_by_name(app_client):
    client, _, _ = app_client
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/launch"]["parameters"]
    assert {p["parameter_name"] for p in params} == (set(FIELDS) - {"out"}) | {"gpus", "run_name"}
    labels = {p["parameter_name"]: p["label"] for p in params}
    assert all(labels[n] == FIELDS[n].metadata["label"] for n in FIELDS if n != "out")


def test_the_form_shows_only_the_options_that_apply():
    from pages.train import OPTIONS, on_controller

    dependent = [n for n in OPTIONS if FIELDS[n].metadata.get("when")]
    shown = dict(zip(dependent, (u["visible"] for u in on_controller(finetune="full", mode="simple",
                                                                      rank_loss="listmle"))))
    assert not any(shown.values())  # LoRA options under full fine-tuning, ranking options in simple mode
    shown = dict(zip(dependent, (u["visible"] for u in on_controller(finetune="lora", mode="full",
                                                                      rank_loss="listmle"))))
    assert shown == {n: n != "margin" for n in dependent}  # the margin is for the margin loss only
