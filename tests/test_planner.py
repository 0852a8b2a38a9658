"""The planner: the real targets' shapes counted as the models themselves count them (a
meta-device model of the published config: no weights), plans for every preset and a model
folder, the parts moving the way the options say, the memory warning, and `fabe plan`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fabe.training.config import PRESETS, TrainConfig, preset_values
from fabe.training.planner import KNOWN_SHAPES, memory_warning, model_shape, plan


@pytest.mark.parametrize("model", sorted(KNOWN_SHAPES))
def test_the_published_shapes_count_the_parameters_the_model_has(model):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = model_shape(model)
    with torch.device("meta"):
        real = LlamaForCausalLM(LlamaConfig(**KNOWN_SHAPES[model]))
    assert shape.params() == sum(p.numel() for p in real.parameters())
    assert shape.params() / 1e9 == pytest.approx(1.35 if "1.3b" in model else 6.74, abs=0.01)


def test_lora_parameters_are_counted_as_peft_makes_them(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from fabe.training.modeling import prepare_for_training

    model = prepare_for_training(AutoModelForCausalLM.from_pretrained(tiny_model_dir), True, False, lora_r=8)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    shape = model_shape(str(tiny_model_dir))
    assert shape.lora_params(8) == trainable
    assert shape.params() == sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_has_a_plan_in_both_modes(preset):
    cfg = TrainConfig(**{**preset_values(preset), "data": "d"})
    simple, full = (plan(cfg, mode) for mode in ("simple", "full"))
    assert 0 < simple.peak_gib < full.peak_gib  # full mode holds the candidates' activations too
    assert full.micro_batch_tokens == cfg.batch_size * (cfg.max_length // 2 + 3 * (cfg.max_length // 2))
    assert simple.tokens_per_step == cfg.batch_size * cfg.max_length * cfg.gradient_accumulation_steps
    if preset != "tiny-cpu":
        assert simple.lora and simple.s_per_step > 0
        assert set(simple.parts_gib) == {"weights", "optimizer state", "gradients", "activations kept",
                                         "layer recomputed", "attention mask", "loss buffers"}
        assert simple.peak_gib < sum(simple.parts_gib.values())  # the loss buffers and gradients never coexist


def test_the_parts_follow_the_options():
    base = {**preset_values("deepseek-6.7b"), "data": "d", "mode": "full"}
    on, off = plan(TrainConfig(**base)), plan(TrainConfig(**{**base, "gradient_checkpointing": False}))
    assert off.parts_gib["activations kept"] > 10 * on.parts_gib["activations kept"]
    assert off.parts_gib["layer recomputed"] == 0 < on.parts_gib["layer recomputed"]
    plain = plan(TrainConfig(**{**base, "packing": False}))
    assert plain.micro_batch_tokens == 4 * 3 * 4096 > on.micro_batch_tokens  # the prompt repeated per candidate
    assert plain.parts_gib["loss buffers"] > 30 * on.parts_gib["loss buffers"]  # full logits vs one chunk
    assert on.parts_gib["weights"] == pytest.approx(6.74e9 * 2 / 2**30, rel=0.01)  # bf16 under LoRA
    full_ft = plan(TrainConfig(**{**base, "finetune": "full"}))
    assert full_ft.parts_gib["weights"] == pytest.approx(2 * on.parts_gib["weights"], rel=0.01)  # fp32 weights
    state = full_ft.parts_gib["optimizer state"] + full_ft.parts_gib["gradients"]
    assert state == pytest.approx(6.74e9 * 12 / 2**30, rel=0.01)  # gradients and Adam moments


def test_a_plan_beyond_the_chosen_gpu_is_warned_about():
    cfg = TrainConfig(**{**preset_values("deepseek-6.7b"), "data": "d", "gradient_checkpointing": False})
    plans = [plan(cfg, mode) for mode in ("simple", "full")]
    small = [{"index": 0, "name": "NVIDIA A10", "memory_total_mb": 24 * 1024}]
    big = [{"index": 0, "name": "NVIDIA H200", "memory_total_mb": 141 * 1024}]
    assert "full mode needs about" in memory_warning(plans, small) and "GPU 0 (NVIDIA A10)" in memory_warning(plans, small)
    assert memory_warning(plans[:1], big) == "" and memory_warning(plans, []) == ""


def test_the_cli_plans_a_preset_and_a_model_folder(tiny_model_dir):
    run = [sys.executable, "-m", "fabe", "plan"]
    out = subprocess.run(run + ["--preset", "deepseek-6.7b"], capture_output=True, text=True, check=True).stdout
    assert "peak (GiB)" in out and "simple" in out and "full" in out and "s/step on A100 at 40% utilization" in out
    got = json.loads(subprocess.run(run + ["--model", str(tiny_model_dir), "--gpu", "H100", "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    assert [p["mode"] for p in got] == ["simple", "full"] and got[0]["gpu"] == "H100"
    bad = subprocess.run(run + ["--model", "no/such-model"], capture_output=True, text=True)
    assert bad.returncode == 1 and "model: no/such-model: no config.json there" in bad.stderr
