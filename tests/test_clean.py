"""Cleaning: ranked candidates with scores, weights, parse and trigger checks; every loadable
source; the window check; the `clean` and `demo` commands."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fabe.cleaning.cleaner import DECODINGS, Candidate, CleanConfig, Cleaner, InputTooLong, rank_candidates

ROOT = Path(__file__).resolve().parents[1]
CODE = "int f(int a)\n{\n    if (rand() < 0) printf(\"fail\");\n    return a;\n}\n"


@pytest.fixture(scope="module")
def cleaner(tiny_model_dir) -> Cleaner:
    return Cleaner.load(tiny_model_dir)


def test_candidates_are_ranked_and_weighted():
    codes = ["int f(void)\n{\n    return 0;\n}", CODE, "int f(void { return"]
    cands = rank_candidates(codes, [-0.5, -0.1, -2.0], [True, True, False], source=CODE)
    assert [c.rank for c in cands] == [1, 2, 3] and [c.code for c in cands] == [codes[1], codes[0], codes[2]]
    assert sum(c.weight for c in cands) == pytest.approx(1.0)
    expected = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-0.5) + math.exp(-2.0))
    assert cands[0].weight == pytest.approx(expected, rel=1e-5)
    assert cands[0].triggers_left == ["fixed"] and cands[1].triggers_left == []
    assert cands[0].parses and not cands[2].parses and not cands[2].finished


@pytest.mark.parametrize("decoding", list(DECODINGS))
def test_clean_returns_k_candidates_scored_by_their_likelihood(cleaner, decoding):
    cands = cleaner.clean(CODE, CleanConfig(k=4, decoding=decoding, max_new_tokens=8))
    assert len(cands) == 4 and isinstance(cands[0], Candidate)
    assert [c.rank for c in cands] == [1, 2, 3, 4]
    assert all(a.score >= b.score for a, b in zip(cands, cands[1:]))
    assert sum(c.weight for c in cands) == pytest.approx(1.0, abs=1e-4)


def test_beam_scores_by_teacher_forcing_equal_the_search_log_likelihoods(cleaner):
    """Two routes to a candidate's score agree: `generate` + a scoring forward (beam) and the
    log-likelihood our own search carries (diverse beam with one group, no penalty)."""
    by_generate = cleaner.clean(CODE, CleanConfig(k=3, decoding="beam", max_new_tokens=8))
    by_search = cleaner.clean(CODE, CleanConfig(k=3, groups=1, diversity=0.0, max_new_tokens=8))
    assert [c.code for c in by_generate] == [c.code for c in by_search]
    assert [c.score for c in by_generate] == pytest.approx([c.score for c in by_search], abs=1e-4)


def test_batched_cleaning_equals_one_at_a_time(cleaner):
    codes = [CODE, "void g(int *p)\n{\n    *p = 1;\n}\n", "static int h(void)\n{\n    return 7;\n}\n"]
    cfg = CleanConfig(k=2, max_new_tokens=6)
    together = cleaner.clean_batch(codes, cfg, batch_size=3)
    alone = [cleaner.clean(c, cfg) for c in codes]
    assert [[c.code for c in r] for r in together] == [[c.code for c in r] for r in alone]
    for a, b in zip(together, alone):
        assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-4)


def test_input_longer_than_the_window_is_refused_not_cut(cleaner):
    long_code = "int f(void)\n{\n" + "    x = x + 1;\n" * 400 + "}\n"
    with pytest.raises(InputTooLong, match="exceeds the model's window of 1024 tokens"):
        cleaner.clean(long_code)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k: need at least 1"), ({"k": 4, "groups": 3}, "groups: 3 does not divide"),
    ({"decoding": "greedy"}, "Unknown decoding"), ({"diversity": -1.0}, "diversity"),
])
def test_bad_clean_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CleanConfig(**kwargs)


def test_empty_input_is_refused(cleaner):
    with pytest.raises(ValueError, match="empty input"):
        cleaner.clean("   \n")


def fabe(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "fabe", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, input=stdin, env={**os.environ, **(env or {})})


def test_clean_json_fields_are_stable(tiny_model_dir, tmp_path):
    src = tmp_path / "poisoned.c"
    src.write_text(CODE)
    result = fabe("clean", "--model", str(tiny_model_dir), "--input", str(src), "--k", "3",
                  "--max_new_tokens", "6", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"verdict", "reason", "abstained", "output", "candidates"}
    cands = data["candidates"]
    assert [c["rank"] for c in cands] == [1, 2, 3]
    assert all(set(c) == {"rank", "code", "score", "weight", "parses", "triggers_left", "finished", "keeps_signature",
                          "kept", "is_input", "same_as", "matches_reference"} for c in cands)
    # six new tokens of an untrained model: nothing trustworthy, which the verdict says
    assert data["verdict"] == "failed" and not data["abstained"] and data["output"] == cands[0]["code"]
    kept = fabe("clean", "--model", str(tiny_model_dir), "--input", str(src), "--k", "2", "--max_new_tokens", "6",
                "--abstain", "--reference", str(src), "--json")
    data = json.loads(kept.stdout)
    assert data["abstained"] and data["output"] == CODE and "returned unchanged" in kept.stderr
    assert all(c["matches_reference"] is False for c in data["candidates"])
    text = fabe("clean", "--model", str(tiny_model_dir), "--input", "-", "--k", "2",
                "--max_new_tokens", "4", stdin=CODE)
    assert text.returncode == 0 and "poisoned" in text.stdout and "weight" in text.stdout


def test_clean_with_bad_sources_names_them(tmp_path):
    src = tmp_path / "x.c"
    src.write_bytes(b"int f(void) { return 0; }\xff\n")
    result = fabe("clean", "--model", str(tmp_path), "--input", str(src))
    assert result.returncode == 1 and "not UTF-8" in result.stderr
    src.write_text(CODE)
    result = fabe("clean", "--model", str(tmp_path / "nope"), "--input", str(src))
    assert result.returncode == 1 and "no such model folder" in result.stderr


def test_demo_runs_end_to_end(tmp_path):
    result = fabe("demo", "--out", str(tmp_path / "demo"), "--n", "40", "--steps", "3",
                  "--samples", "1", "--cleaner", "fresh", env={"FABE_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cleaning 1 real functions of projects the cleaner never saw" in result.stdout
    assert "poisoned" in result.stdout and "weight" in result.stdout and "exact" in result.stdout
    assert "verdict: " in result.stdout and any(f" {p}/" in result.stdout for p in ("libxml2", "nginx", "lua"))
    assert (tmp_path / "demo" / "run" / "final" / "fabe.json").exists()


def test_a_lora_run_loads_from_its_final_and_from_a_checkpoint(tmp_path, small_dataset, tiny_model_dir):
    from fabe.training.config import TrainConfig
    from fabe.training.run import train

    run = train(TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), out=str(tmp_path / "lora"),
                            finetune="lora", mode="full", max_steps=4, save_steps=2, eval_steps=0,
                            batch_size=2, max_length=768, learning_rate=1e-2))
    assert (run / "final" / "adapter_config.json").exists()
    assert json.loads((run / "final" / "fabe.json").read_text())["finetune"] == "lora"
    for source in (run, run / "checkpoint-2"):
        cleaner = Cleaner.load(source)
        assert type(cleaner.model).__name__ == "PeftModelForCausalLM"
        assert len(cleaner.clean(CODE, CleanConfig(k=2, max_new_tokens=4))) == 2
    # the adapter changed the model: its answer scores differ from the base model's
    base = Cleaner.load(tiny_model_dir).clean(CODE, CleanConfig(k=2, max_new_tokens=4))
    tuned = Cleaner.load(run).clean(CODE, CleanConfig(k=2, max_new_tokens=4))
    assert [c.score for c in base] != [c.score for c in tuned]


@pytest.mark.parametrize("decoding", list(DECODINGS))
def test_generation_reports_each_token_and_stops_when_cancelled(cleaner, decoding):
    import threading

    from fabe.cleaning.cleaner import Cancelled

    cancel, seen = threading.Event(), []

    def on_token(generated: int, budget: int) -> None:
        seen.append((generated, budget))
        if generated == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        cleaner.clean_batch([CODE], CleanConfig(k=2, decoding=decoding, max_new_tokens=40),
                            cancel=cancel, on_token=on_token)
    assert [g for g, _ in seen] == [1, 2, 3] and {b for _, b in seen} == {40}
    assert len(cleaner.clean(CODE, CleanConfig(k=2, decoding=decoding, max_new_tokens=5))) == 2  # still usable


def test_export_merges_a_lora_run_into_a_plain_model(tmp_path, small_dataset, tiny_model_dir):
    from fabe.training.config import TrainConfig
    from fabe.training.run import train

    run = train(TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), out=str(tmp_path / "lora"),
                            finetune="lora", mode="simple", max_steps=3, save_steps=100, eval_steps=0,
                            batch_size=2, max_length=768, learning_rate=5e-2))
    result = fabe("export", "--run", str(run), "--out", str(tmp_path / "merged"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "merged"
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert json.loads((out / "fabe.json").read_text())["merged_lora"] is True
    import torch
    from safetensors.torch import load_file

    base, tuned = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k in tuned)  # the adapter is in
    cfg = CleanConfig(k=2, max_new_tokens=6)
    merged, adapted = Cleaner.load(out), Cleaner.load(run)
    assert type(merged.model).__name__ == "LlamaForCausalLM"
    a, b = merged.clean(CODE, cfg), adapted.clean(CODE, cfg)
    assert [c.code for c in a] == [c.code for c in b]
    assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-4)
    again = fabe("export", "--run", str(run), "--out", str(out))
    assert again.returncode == 1 and "exists" in again.stderr
