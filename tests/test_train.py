"""FABE training: prompt/target tokenization, batches, the loss, LoRA + gradient
checkpointing, short real runs in both modes, metrics, resume, config parsing."""

from __future__ import annotations

import json

import pytest
import torch

from fabe.data.dataset import Record, load_records
from fabe.training.encoding import Collator, encode_records, prompt_ids
from fabe.training.losses import IGNORE_INDEX
from fabe.training.prompt import build_prompt
from fabe.rundir import METRIC_FIELDS, RunDir
from fabe.training.config import TrainConfig, resolve_config
from fabe.training.run import train, train_run
from fabe.training.trainer import FabeTrainer, build_trainer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _record(target: str, n: int = 3) -> Record:
    outs = [target] + [f"int f(void)\n{{\n    return {i};\n}}" for i in range(n - 1)]
    return Record(id="r", input="int f(void)\n{\n    return 9;\n}", output=outs,
                  score=[10.0] + [1.0] * (n - 1))


def test_labels_are_exactly_the_target_even_where_tokens_would_merge(tokenizer):
    target = "    return 0;\n}"  # leading blanks merge with the prompt's final newline
    prompt_text = build_prompt("int f(void)\n{\n    return 9;\n}")
    joint = tokenizer(prompt_text + target, add_special_tokens=False)["input_ids"]
    apart = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    assert joint[:len(apart)] != apart or len(joint) != len(apart) + len(
        tokenizer(target, add_special_tokens=False)["input_ids"])  # the premise: they differ
    (enc,), _ = encode_records([_record(target)], tokenizer, "simple", 1024)
    batch = Collator(tokenizer.pad_token_id, "simple")([enc])
    labels = batch["labels"][0]
    n_prompt = len(prompt_ids(tokenizer, _record(target).input))
    expected = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert labels[:n_prompt].tolist() == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:].tolist() == expected
    assert batch["input_ids"][0, n_prompt:].tolist() == expected


def test_full_mode_batches_pad_dynamically_and_label_only_the_best_row(tokenizer):
    recs = [_record("int g(void)\n{\n    return 1;\n}", 3), _record("void h(void)\n{\n}", 2)]
    encoded, _ = encode_records(recs, tokenizer, "full", 4096)
    batch = Collator(tokenizer.pad_token_id, "full")(encoded)
    rows = sum(len(e.targets) for e in encoded)
    longest = max(len(e.prompt) + len(t) for e in encoded for t in e.targets)
    assert batch["input_ids"].shape == (rows, longest)  # never padded to max_length
    assert batch["cand_index"].tolist() == [[0, 1, 2], [3, 4, -1]]
    has_mle = batch["labels"].ne(IGNORE_INDEX).any(-1).tolist()
    assert has_mle == [True, False, False, True, False]  # the best row of each record
    assert batch["score_labels"].ne(IGNORE_INDEX).any(-1).all()
    assert batch["quality"].tolist() == [[10.0, 1.0, 1.0], [10.0, 1.0, 0.0]]


def test_simple_mode_tokenizes_only_the_best_candidate(tokenizer):
    rec = Record(id="x", input="int a;", output=["int b;", "int c;", "int d;"], score=[0.3, 1000, 5])
    (enc,), _ = encode_records([rec], tokenizer, "simple", 1024)
    assert len(enc.targets) == 1
    assert enc.targets[0][:-1] == tokenizer("int c;", add_special_tokens=False)["input_ids"]


def test_over_long_targets_are_cut_and_counted(tokenizer):
    rec = _record("int g(void)\n{\n" + "    x++;\n" * 200 + "}")
    prompt_len = len(prompt_ids(tokenizer, rec.input))
    encoded, counts = encode_records([rec, rec], tokenizer, "full", prompt_len + 20)
    assert counts == {"cut": 2, "dropped": 0}
    assert all(len(t) <= 20 for e in encoded for t in e.targets)
    assert encoded[0].prompt == prompt_ids(tokenizer, rec.input)  # the prompt stays whole
    _, counts = encode_records([rec], tokenizer, "full", prompt_len)
    assert counts["dropped"] == 1


def _trainer(model, tokenizer, cfg: TrainConfig, tmp_path) -> FabeTrainer:
    return build_trainer(cfg, tmp_path, [_record("int g(void)\n{\n}")], model=model, tokenizer=tokenizer).trainer


def test_num_items_in_batch_normalizes_the_mle_over_the_accumulated_batch(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = TrainConfig(data="x", mode="simple")
    trainer = _trainer(model, tokenizer, cfg, tmp_path)
    encoded, _ = encode_records([_record("int g(void)\n{\n}")], tokenizer, "simple", 1024)
    batch = Collator(tokenizer.pad_token_id, "simple")(encoded)
    model.train()
    per_token = trainer.compute_loss(model, batch)
    n = int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum())
    over_two_batches = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(2 * n))
    assert over_two_batches.item() == pytest.approx(per_token.item() / 2, rel=1e-5)
    assert trainer.loss_is_scaled_for_ga is True


def test_ranking_loss_alone_reaches_lora_weights_with_gradient_checkpointing(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from fabe.training.modeling import prepare_for_training

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = prepare_for_training(base, lora=True, gradient_checkpointing=True, lora_dropout=0.0)
    assert model.base_model.model.is_activation_checkpointing
    cfg = TrainConfig(data="x", mode="full", alpha=0.0, beta=1.0, finetune="lora")
    trainer = _trainer(model, tokenizer, cfg, tmp_path)
    encoded, _ = encode_records([_record("int g(void)\n{\n}", 3)] * 2, tokenizer, "full", 1024)
    model.train()
    loss = trainer.compute_loss(model, Collator(tokenizer.pad_token_id, "full")(encoded))
    loss.backward()
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    # B starts at zero, so the first gradient lands on every lora_B (and none on lora_A yet)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    frozen = [p for n, p in model.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)


def _records_of_two_prompt_lengths() -> list[Record]:
    records = [_record("int g(void)\n{\n}", 3), _record("int h(int a)\n{\n    return a + a;\n}", 4)]
    records[1] = Record(id="long", input="int k(int a, int b)\n{\n    return a * b - 1;\n}",
                        output=records[1].output, score=records[1].score)  # prompts of different lengths
    return records + [_record("int q(void)\n{\n    return 7;\n}", 2)]


def _loss_and_grads(trainer, model, batch) -> tuple:
    model.zero_grad()
    n = int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum())
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(n))
    loss.backward()
    components = {k: v[-1].item() for k, v in trainer._components["train"].items()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return n, loss.item(), components, grads


@pytest.mark.parametrize("mode,rank_loss,lora,checkpointing,attention", [
    ("full", "listmle", False, False, "sdpa"), ("full", "margin", False, False, "fabe_blocks"),
    ("full", "listmle", True, True, "fabe_blocks"), ("full", "listmle", True, True, "sdpa"),
    ("full", "listmle", False, True, "eager"), ("simple", "listmle", False, False, "sdpa"),
    ("simple", "listmle", True, True, "fabe_blocks")])
def test_packing_gives_the_plain_loss_and_gradients(tiny_model_dir, tokenizer, tmp_path, mode, rank_loss, lora,
                                                   checkpointing, attention):
    """Each prompt once with its candidates after it (full mode), several samples to a row,
    under the block mask (dense for SDPA and eager attention, block by block for
    fabe_blocks): the same MLE tokens, loss, components and gradients as one padded row per
    prompt + candidate, with gradient checkpointing and LoRA on or off."""
    from transformers import AutoModelForCausalLM

    from fabe.training.modeling import prepare_for_training
    from fabe.training.packing import register_block_attention

    register_block_attention()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.set_attn_implementation(attention)
    model = prepare_for_training(model, lora, checkpointing, lora_dropout=0.0)
    model.train()
    cfg = TrainConfig(data="x", mode=mode, rank_loss=rank_loss)
    trainer = _trainer(model, tokenizer, cfg, tmp_path)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop
    encoded, _ = encode_records(_records_of_two_prompt_lengths(), tokenizer, mode, 1024)
    plain = Collator(tokenizer.pad_token_id, mode)(encoded)
    packed = Collator(tokenizer.pad_token_id, mode, packing=True, capacity=1024)(encoded)
    assert packed["input_ids"].size(0) == 1  # the three samples share one row
    (n0, loss0, comp0, grad0), (n1, loss1, comp1, grad1) = (_loss_and_grads(trainer, model, b) for b in (plain, packed))
    assert n0 == n1  # Trainer counts the same MLE tokens in both layouts
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    assert comp1 == pytest.approx(comp0, rel=1e-5)
    assert mode == "simple" or comp0["rank_loss"] > 0
    assert grad0.keys() == grad1.keys() and grad0
    for k in grad0:
        assert torch.allclose(grad0[k], grad1[k], rtol=1e-4, atol=1e-6), k


def test_packed_rows_hold_each_prompt_once_and_waste_no_tokens(tokenizer):
    from fabe.training.packing import allowed

    encoded, _ = encode_records(_records_of_two_prompt_lengths(), tokenizer, "full", 1024)
    batch = Collator(tokenizer.pad_token_id, "full", packing=True, capacity=1024)(encoded)
    real = sum(len(e.prompt) + sum(map(len, e.targets)) for e in encoded)
    assert batch["segments"].ge(0).sum() == real == batch["input_ids"].numel()  # no padding at all
    plain = Collator(tokenizer.pad_token_id, "full")(encoded)
    assert plain["attention_mask"].sum() > real  # the plain rows repeat every prompt
    mask = allowed(batch["segments"], batch["roles"])[0, 0]
    seg, role = batch["segments"][0], batch["roles"][0]
    first_cand = int((role == 1).nonzero()[0])
    second = int((role == 2).nonzero()[0])
    assert mask[second, :first_cand].all()  # a candidate sees its prompt
    assert not mask[second, first_cand:second].any()  # and never another candidate
    other = int((seg == 1).nonzero()[0])
    assert not mask[other, :other].any()  # nor another sample
    assert batch["position_ids"][0, first_cand] == batch["position_ids"][0, second] == first_cand


def test_rows_are_packed_within_the_capacity_with_the_least_padding():
    from fabe.training.packing import bins, first_fit

    assert first_fit([300, 700, 500, 200], 1000) == [[0, 1], [2, 3]]  # 700 + 300, 500 + 200
    assert bins([1500, 10], 1000) == [[0], [1]]  # a longer sample gets a row of its own
    assert first_fit([1165] * 4, 4096) == [[0, 1, 2], [3]]  # two rows padded to 3,495: 1.5 x the tokens
    assert bins([1165] * 4, 4096) == [[0, 1], [2, 3]]  # two rows of 2,330: no padding
    for lengths in ([900, 850, 300, 120, 40], [1000] * 3, [400, 390, 380, 370, 360, 350]):
        rows = bins(lengths, 1024)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= 1024 or len(row) == 1 for row in rows)


def test_lora_targets_are_detected_or_refused(tiny_model_dir):
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    from fabe.training.modeling import detect_lora_targets

    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert detect_lora_targets(llama) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert detect_lora_targets(gpt2) == ["c_attn", "c_proj"]
    with pytest.raises(ValueError, match="lora_targets: .*'wq'.* not in the model's linear layers"):
        detect_lora_targets(llama, "q_proj,wq")
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no known attention projections"):
        detect_lora_targets(mlp)


def _run(tmp_path, data, model_dir, mode, steps=30, **extra):
    values = dict(data=str(data), model=str(model_dir), out=str(tmp_path / mode), mode=mode,
                  max_steps=steps, batch_size=4, learning_rate=3e-3, warmup_steps=2,
                  logging_steps=5, eval_steps=15, save_steps=15, max_length=768, precision="fp32")
    cfg = TrainConfig(**{**values, **extra})
    return RunDir(train(cfg))


@pytest.mark.parametrize("mode", ["simple", "full"])
def test_thirty_steps_lower_the_loss_and_write_the_run_directory(mode, tmp_path, small_dataset, tiny_model_dir):
    from safetensors.torch import load_file

    run = _run(tmp_path, small_dataset, tiny_model_dir, mode)
    rows = run.read_metrics()
    train_rows = [r for r in rows if r["loss"] is not None]
    assert all(set(METRIC_FIELDS) <= set(r) for r in rows)
    assert train_rows[-1]["step"] == 30 and train_rows[-1]["max_steps"] == 30
    assert train_rows[-1]["mle_loss"] < train_rows[0]["mle_loss"] - 0.5
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert any(r["eval_loss"] is not None for r in rows)
    assert all(r["s_per_step"] > 0 and r["eta_s"] >= 0 for r in train_rows[1:])
    if mode == "full":
        assert all(r["rank_loss"] is not None and r["rank_loss"] > 0 for r in train_rows)
    else:
        assert all(r["rank_loss"] is None for r in rows)
    assert run.read_status()["state"] == "finished" and run.read_status()["exit_code"] == 0
    config = run.read_config()
    assert config["train"]["mode"] == mode and config["provenance"]["packages"]["torch"]
    assert len(config["provenance"]["data"]) == 2  # train and valid hashed
    meta = json.loads((run.final_path / "fabe.json").read_text())
    assert meta["mode"] == mode and meta["prompt_version"] == 1
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(run.final_path / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert [p.name for p in run.checkpoints()] == ["checkpoint-15", "checkpoint-30"]
    log = run.log_path.read_text()
    assert "Running training" in log and "step 30/30  loss " in log  # progress lines in the log tail
    assert "Model config" not in log  # no config dumps burying them


def test_resume_continues_the_step_count(tmp_path, small_dataset, tiny_model_dir):
    run = _run(tmp_path, small_dataset, tiny_model_dir, "simple", steps=10, save_steps=5)
    first = [r["step"] for r in run.read_metrics() if r["loss"] is not None]
    train_run(run.path, resume=True, changes={"max_steps": 20})
    steps = [r["step"] for r in run.read_metrics() if r["loss"] is not None]
    assert steps[:len(first)] == first and steps[-1] == 20
    assert steps[len(first):][0] > 10  # picked up after step 10, not from 0
    assert run.read_status()["state"] == "finished"
    config = run.read_config()
    assert config["train"]["max_steps"] == 20 and config["train"]["data"] == str(small_dataset)
    assert [r["changes"] for r in config["resumes"]] == [{"max_steps": 20}]  # what changed, not a second copy


def test_a_bad_dataset_fails_before_any_run_directory_exists(tmp_path, tiny_model_dir):
    from fabe.data.dataset import DatasetError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "int x;", "output": ["int x;"], "score": [1.0]}\n')
    with pytest.raises(DatasetError, match="bad.jsonl:1: output: 1 candidate"):
        train(TrainConfig(data=str(bad), model=str(tiny_model_dir), out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_config_from_preset_file_and_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: deepseek-1.3b\nmode: simple\nlearning_rate: 5.0e-5\n")
    cfg = resolve_config(["--config", str(path), "--learning_rate", "1e-4", "--data", "d"])
    assert cfg.model == "deepseek-ai/deepseek-coder-1.3b-instruct" and cfg.finetune == "lora"
    assert (cfg.lora_r, cfg.lora_alpha, cfg.batch_size, cfg.gradient_accumulation_steps) == (8, 16, 4, 4)
    assert cfg.mode == "simple" and cfg.learning_rate == 1e-4 and cfg.max_length == 4096
    path.write_text("learning_rat: 1.0\n")
    with pytest.raises(ValueError, match="unknown field 'learning_rat' \\(did you mean 'learning_rate'\\?\\)"):
        resolve_config(["--config", str(path)])
    path.write_text("mode: simple\nlearning_rate: [1.0\n")
    with pytest.raises(ValueError, match=f"{path}:3: not valid YAML"):
        resolve_config(["--config", str(path)])


@pytest.mark.parametrize("kwargs, field", [
    ({"learning_rate": -1.0}, "learning_rate"), ({"mode": "fancy"}, "mode"),
    ({"rank_loss": "pairwise"}, "Unknown loss type"), ({"batch_size": 0}, "batch_size"),
    ({"alpha": 0.0, "mode": "simple"}, "alpha, beta"),
])
def test_bad_config_values_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(data="d", **kwargs)


def test_deepspeed_zero_stages_and_files():
    from fabe.training.config import deepspeed_config

    zero3 = deepspeed_config("zero3")
    assert zero3["zero_optimization"]["stage"] == 3 and zero3["train_micro_batch_size_per_gpu"] == "auto"
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert deepspeed_config("zero2")["zero_optimization"]["stage"] == 2
    assert deepspeed_config("ds.json") == "ds.json" and deepspeed_config("") is None
    with pytest.raises(ValueError, match="deepspeed: 'zero9'"):
        TrainConfig(data="d", deepspeed="zero9")
    with pytest.raises(ValueError, match="attention: invalid value 'flash'"):  # refused before a model loads
        TrainConfig(data="d", attention="flash")


def test_eval_uses_the_renamed_eval_strategy(tmp_path):
    from fabe.training.trainer import training_arguments

    args = training_arguments(TrainConfig(data="d", eval_steps=7), tmp_path, has_eval=True)
    assert args.eval_strategy == "steps" and args.eval_steps == 7
    assert not args.remove_unused_columns  # the collator's own keys must reach it


def test_a_second_run_into_the_same_directory_is_refused(tmp_path, small_dataset, tiny_model_dir):
    run = _run(tmp_path, small_dataset, tiny_model_dir, "simple", steps=2)
    with pytest.raises(FileExistsError, match="--resume"):
        _run(tmp_path, small_dataset, tiny_model_dir, "simple", steps=2)
    assert load_records(small_dataset / "train.jsonl")
    assert run.read_status()["state"] == "finished"


def test_sigterm_saves_a_checkpoint_and_marks_the_run_stopped(tmp_path, small_dataset, tiny_model_dir):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "stopme"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fabe", "train", "--data", str(small_dataset), "--model",
         str(tiny_model_dir), "--out", str(out), "--mode", "simple", "--max_steps", "5000",
         "--batch_size", "2", "--logging_steps", "1", "--save_steps", "1000", "--eval_steps", "0",
         "--max_length", "768"], cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = RunDir(out)
    deadline = time.time() + 240
    while time.time() < deadline and len(run.read_metrics()) < 3:
        time.sleep(0.5)
    assert len(run.read_metrics()) >= 3, proc.stderr.read() if proc.poll() is not None else "no metrics"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    status = run.read_status()
    assert status["state"] == "stopped" and status["ended_at"] >= status["started_at"]
    (checkpoint,) = run.checkpoints()
    step = int(checkpoint.name.split("-")[1])
    assert 3 <= step < 5000 and not run.final_path.exists()


def test_stderr_into_train_log_writes_each_line_once(tmp_path, small_dataset, tiny_model_dir):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "logged"
    out.mkdir()
    with (out / "train.log").open("w") as log:
        result = subprocess.run(
            [sys.executable, "-m", "fabe", "train", "--data", str(small_dataset), "--model",
             str(tiny_model_dir), "--out", str(out), "--mode", "simple", "--max_steps", "2",
             "--batch_size", "2", "--eval_steps", "0", "--max_length", "768"],
            cwd=Path(__file__).resolve().parents[1], stdout=log, stderr=log, timeout=300)
    assert result.returncode == 0
    text = (out / "train.log").read_text()
    assert text.count("***** Running training *****") == 1


def test_the_flex_mask_function_is_the_dense_block_mask(tokenizer):
    from fabe.training.packing import allowed, mask_mod

    encoded, _ = encode_records(_records_of_two_prompt_lengths(), tokenizer, "full", 1024)
    batch = Collator(tokenizer.pad_token_id, "full", packing=True, capacity=100)(encoded)  # rows of one sample
    assert batch["segments"].lt(0).any()  # padded rows too
    dense = allowed(batch["segments"], batch["roles"])[:, 0]
    rows, length = batch["segments"].shape
    allow = mask_mod(batch["segments"], batch["roles"])
    for b in range(rows):
        grid = allow(torch.tensor(b), torch.tensor(0), torch.arange(length)[:, None], torch.arange(length)[None, :])
        assert torch.equal(grid, dense[b])


def test_auto_attention_is_sdpa_without_a_gpu():
    from fabe.training.trainer import choose_attention

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine may choose flex attention")
    assert choose_attention("auto") == "fabe_blocks" and choose_attention("eager") == "eager"


def test_chunked_log_probabilities_and_gradients_equal_the_full_logits():
    """Several chunks (3 tokens each here), each recomputed in backward: the same values and
    the same gradients to the hidden states and the output layer as one (R x T x V) logits."""
    from fabe.training.losses import token_logprobs
    from fabe.training.packing import chunked_token_logprobs

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(2, 7, 8, requires_grad=True)
    gather = torch.tensor([[0, 1, 2, 3], [7, 8, 9, 0]])  # flat positions predicting each target token
    labels = torch.tensor([[IGNORE_INDEX, 5, 6, 7, 8], [IGNORE_INDEX, 9, 10, 11, IGNORE_INDEX]])
    got = chunked_token_logprobs(head, hidden, gather, labels, chunk=3)
    (got * torch.arange(1, 5)).sum().backward()
    grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    flat = hidden.reshape(-1, 8)[gather]  # (R, T, D)
    logits = head(torch.cat([flat, flat[:, :1]], 1))  # position t predicts label t + 1; the last is dropped
    want = token_logprobs(logits, labels)
    (want * torch.arange(1, 5)).sum().backward()
    assert torch.allclose(got, want, atol=1e-6) and got[1, 3] == 0  # an ignored token scores 0
    assert torch.allclose(grads[0], hidden.grad, atol=1e-6) and torch.allclose(grads[1], head.weight.grad, atol=1e-6)


def test_a_run_written_with_the_shared_prompt_option_trains_packed():
    from fabe.training.config import config_from_dict

    old = {k: v for k, v in TrainConfig(data="d").to_dict().items() if k not in ("packing", "attention")}
    cfg = config_from_dict({**old, "shared_prompt": False}, "runs/old/config.json")
    assert cfg.packing is True and cfg.attention == "auto"
    with pytest.raises(ValueError, match="missing options \\['attention'\\]"):
        config_from_dict({**old, "packing": True}, "runs/new/config.json")  # a resolved config names every option
