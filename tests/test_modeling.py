"""The embedded tiny model: a Hugging Face folder that Auto* classes load and run, and clear
errors for model sources that cannot be loaded."""

from __future__ import annotations

import json

import pytest
import torch

from fabe.training.modeling import ModelLoadError, TinyConfig, init_tiny, load_causal_lm
from fabe.training.prompt import build_prompt


def test_tiny_folder_loads_with_auto_classes_and_runs(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    code = "static int f(int *buf, size_t len)\n{\n    return buf[len - 1];\n}\n"
    ids = tok(build_prompt(code), add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == build_prompt(code)  # byte-level BPE round-trips exactly
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()
    assert (tiny_model_dir / "model.safetensors").exists()
    assert json.loads((tiny_model_dir / "fabe_tiny.json").read_text())["vocab_size"] == 512
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>"


def test_tokenizer_is_compact_on_c(tiny_model_dir):
    from transformers import AutoTokenizer

    from fabe.data.generator import generate_functions

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    code = generate_functions(1, seed=99)[0].code
    assert len(tok(code)["input_ids"]) < len(code.encode()) / 2


def test_load_causal_lm(tiny_model_dir):
    model, tok = load_causal_lm(str(tiny_model_dir), dtype="float32")
    assert model.dtype == torch.float32 and tok.pad_token_id is not None
    assert sum(p.numel() for p in model.parameters()) > 10_000


def test_init_tiny_refuses_to_overwrite_and_same_seed_same_weights(tmp_path, tiny_model_dir):
    from helpers import TINY_TEST_SHAPE as kwargs

    with pytest.raises(FileExistsError, match="--overwrite"):
        init_tiny(TinyConfig(out=str(tiny_model_dir), **kwargs))
    again = init_tiny(TinyConfig(out=str(tmp_path / "again"), **kwargs))
    assert (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()
    init_tiny(TinyConfig(out=str(again), overwrite=True, **{**kwargs, "seed": 1}))
    assert (again / "model.safetensors").read_bytes() != (tiny_model_dir / "model.safetensors").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary folder left


@pytest.mark.parametrize("source, message", [
    ("/nonexistent/model", "no such model folder"),
    ("some-org/some-model-that-is-not-cached", "cannot load model"),
])
def test_unreachable_models_give_clear_errors(source, message):
    with pytest.raises(ModelLoadError, match=message):
        load_causal_lm(source)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not a folder"):
        load_causal_lm(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize("kwargs, field", [
    ({"num_heads": 5}, "num_heads"), ({"vocab_size": 100}, "vocab_size"), ({"num_layers": 0}, "num_layers"),
])
def test_bad_tiny_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TinyConfig(out="x", **kwargs)
