"""Bad input (issue "hardening") through the CLI, the Python API and the page: malformed,
empty, binary and huge datasets, model paths that are missing or not models, adapters and
checkpoints paired with another base model, out-of-range training options, K=0, and code in
the Clean tab that is empty, binary or not C. Each gets a message naming the file, line or
field, and leaves no run directory, eval.json or defense result behind (a pre-existing one
stays intact).

The CLI table runs `fabe.cli.main` in-process (what `python -m fabe` runs, minus the
interpreter start), so an exception escaping it fails the test as a traceback would; a few
cases also run as real `python -m fabe` processes, in parallel."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import page_message, served_app

from fabe.runs import manager as runs
from fabe.cli import main
from fabe.data.dataset import DatasetError, load_records
from fabe.training.modeling import ModelLoadError

ROOT = Path(__file__).resolve().parents[2]
FIVE_MB = 5 * 2**20
CODE = "int f(int a)\n{\n    return a + 1;\n}\n"


def _record(rid: str, code: str = CODE) -> dict:
    return {"id": rid, "input": code, "output": [code, code + "\n"], "score": [1.0, 0.5],
            "clean": code, "trigger": "fixed", "label": 1}


def _huge_function() -> str:
    body = "    x = x + 1;\n" * (FIVE_MB // 15)
    return "int f(int x)\n{\n" + body + "    return x;\n}\n"


@pytest.fixture(scope="module")
def bad(tmp_path_factory, small_dataset) -> SimpleNamespace:
    """Every bad input file, made once."""
    d = tmp_path_factory.mktemp("bad-input")
    noise = random.Random(0).randbytes(4096)
    huge = _huge_function()
    (d / "random.jsonl").write_bytes(noise)
    (d / "random.c").write_bytes(noise)
    (d / "gzip.jsonl").write_bytes(gzip.compress((small_dataset / "test.jsonl").read_bytes()))
    (d / "gzip.c").write_bytes(gzip.compress(CODE.encode()))
    good_line = json.dumps(_record("a")).encode()
    latin1_line = json.dumps(_record("b", "int caf\u00e9;"), ensure_ascii=False).encode("latin-1")
    (d / "latin1.jsonl").write_bytes(good_line + b"\n" + latin1_line + b"\n")
    (d / "latin1.c").write_bytes(b"/* caf\xe9 */\n" + CODE.encode())
    (d / "missing_score.jsonl").write_text(json.dumps({k: v for k, v in _record("m").items() if k != "score"}) + "\n")
    (d / "empty.jsonl").write_text("")
    (d / "no_clean.jsonl").write_text(json.dumps({**_record("n"), "clean": None, "label": None}) + "\n")
    (d / "corpus.jsonl").write_text("".join(json.dumps({"project": "alpha", "func": CODE.replace("f(", f"f{i}(")}) + "\n"
                                            for i in range(5)))
    (d / "huge.jsonl").write_text(json.dumps(_record("big", huge)) + "\n")
    (d / "huge.c").write_text(huge)
    (d / "not-c.txt").write_text("Dear reviewer,\nplease find attached the minutes of the meeting.\n")
    (d / "not-a-model").mkdir()
    (d / "not-a-model" / "notes.txt").write_text("just notes")
    (d / "unknown.yaml").write_text("mode: full\nlearning_rat: 0.1\n")
    (d / "unknown.json").write_text('{\n  "mode": "full",\n  "bogus": 1\n}\n')
    (d / "negative_lr.yaml").write_text("mode: full\nlearning_rate: -0.1\n")
    (d / "beta_simple.yaml").write_text("mode: simple\nbeta: 0.5\n")
    return SimpleNamespace(dir=d, data=small_dataset, **{p.stem.replace("-", "_") + "_" + p.suffix[1:] if p.suffix
                                                         else p.name.replace("-", "_"): p for p in d.iterdir()})


def _lora_adapter(folder: Path, tiny: Path, claims: Path) -> Path:
    """A LoRA cleaner trained on `tiny` whose fabe.json says it was trained on `claims`."""
    from fabe.training.modeling import load_causal_lm, prepare_for_training

    model, tokenizer = load_causal_lm(str(tiny))
    final = folder / "final"
    prepare_for_training(model, True, False).save_pretrained(final)
    tokenizer.save_pretrained(final)
    (final / "fabe.json").write_text(json.dumps({"base_model": str(claims), "mode": "full", "finetune": "lora"}))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model_dir) -> SimpleNamespace:
    """Models paired with the wrong partner: LoRA adapters claiming a base of other shapes or
    another tokenizer, and full checkpoints whose config or tokenizer come from another model."""
    from fabe.training.modeling import TinyConfig, init_tiny

    d = tmp_path_factory.mktemp("mismatched")
    shape = json.loads((tiny_model_dir / "fabe_tiny.json").read_text())
    shape.pop("out")
    other_shape = init_tiny(TinyConfig(**{**shape, "out": str(d / "other-shape"), "hidden_size": 32}))
    other_tok = init_tiny(TinyConfig(**{**shape, "out": str(d / "other-tok"), "seed": 7, "vocab_size": 600}))
    mixed_config = Path(shutil.copytree(tiny_model_dir, d / "mixed-config"))
    shutil.copy(other_shape / "config.json", mixed_config / "config.json")
    mixed_tok = Path(shutil.copytree(tiny_model_dir, d / "mixed-tokenizer"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(other_tok / name, mixed_tok / name)
    return SimpleNamespace(
        lora_other_shape=_lora_adapter(d / "lora-shape", tiny_model_dir, other_shape),
        lora_other_tok=_lora_adapter(d / "lora-tok", tiny_model_dir, other_tok),
        mixed_config=mixed_config, mixed_tok=mixed_tok)


# ---------------------------------------------------------------- the CLI

def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `python -m fabe ARGV`, run in-process."""
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


# (id, argv with {placeholders}, substrings of stderr; {run} and {out} must not exist afterwards)
CLI_CASES = [
    ("check-random-bytes", "data check {bad.random_jsonl}", ["{bad.random_jsonl}: a binary file (NUL byte"]),
    ("check-gzip", "data check {bad.gzip_jsonl}", ["{bad.gzip_jsonl}: a gzip-compressed file"]),
    ("check-not-utf8", "data check {bad.latin1_jsonl}", ["{bad.latin1_jsonl}:2: encoding: not UTF-8 (byte 0xe9"]),
    ("check-missing-field", "data check {bad.missing_score_jsonl}", ["{bad.missing_score_jsonl}:1: score: missing"]),
    ("check-zero-records", "data check {bad.empty_jsonl}", ["{bad.empty_jsonl}: no records"]),
    ("train-zero-records", "train --data {bad.empty_jsonl} --model {tiny} --out {run}",
     ["{bad.empty_jsonl}: no records"]),
    ("train-random-bytes", "train --data {bad.random_jsonl} --model {tiny} --out {run}", ["a binary file"]),
    ("train-gzip", "train --data {bad.gzip_jsonl} --model {tiny} --out {run}", ["gzip-compressed"]),
    ("train-huge-function", "train --data {bad.huge_jsonl} --model {tiny} --max_length 256 --out {run}",
     ["data: {bad.huge_jsonl}: no record fits max_length 256"]),
    ("train-model-missing", "train --data {bad.data} --model {bad.dir}/no-such-model --out {run}",
     ["{bad.dir}/no-such-model: no such model folder"]),
    ("train-not-a-model", "train --data {bad.data} --model {bad.not_a_model} --out {run}",
     ["{bad.not_a_model}: no config.json; not a Hugging Face model folder"]),
    ("train-unknown-field-yaml", "train --config {bad.unknown_yaml} --data {bad.data} --out {run}",
     ["{bad.unknown_yaml}:2: unknown field 'learning_rat' (did you mean 'learning_rate'?)"]),
    ("train-unknown-field-json", "train --config {bad.unknown_json} --data {bad.data} --out {run}",
     ["{bad.unknown_json}:3: unknown field 'bogus'"]),
    ("train-unknown-flag", "train --data {bad.data} --bogus 1 --out {run}", ["--bogus"]),
    ("train-negative-lr-flag", "train --data {bad.data} --learning_rate -1e-3 --out {run}",
     ["learning_rate: invalid value -0.001"]),
    ("train-negative-lr-file", "train --config {bad.negative_lr_yaml} --data {bad.data} --out {run}",
     ["{bad.negative_lr_yaml}:2: learning_rate: invalid value -0.1"]),
    ("train-beta-simple-flag", "train --data {bad.data} --mode simple --beta 0.5 --out {run}",
     ["beta: 0.5 would be ignored: simple mode"]),
    ("train-beta-simple-file", "train --config {bad.beta_simple_yaml} --data {bad.data} --out {run}",
     ["{bad.beta_simple_yaml}:2: beta: 0.5 would be ignored"]),
    ("clean-random-bytes", "clean --model {tiny} --input {bad.random_c}", ["{bad.random_c}: a binary file"]),
    ("clean-gzip", "clean --model {tiny} --input {bad.gzip_c}", ["{bad.gzip_c}: a gzip-compressed file"]),
    ("clean-not-utf8", "clean --model {tiny} --input {bad.latin1_c}", ["{bad.latin1_c}:1: not UTF-8 text (byte 0xe9"]),
    ("clean-huge-function", "clean --model {tiny} --input {bad.huge_c}",
     ["exceeds the model's window of 1024 tokens"]),
    ("clean-model-missing", "clean --model {bad.dir}/no-such-model --input {bad.not_c_txt}", ["no such model folder"]),
    ("clean-not-a-model", "clean --model {bad.not_a_model} --input {bad.not_c_txt}", ["no config.json"]),
    ("clean-k0", "clean --model {tiny} --k 0 --input {bad.not_c_txt}", ["k: need at least 1 candidate, got 0"]),
    ("clean-reference-missing", "clean --model {tiny} --input {bad.not_c_txt} --reference {bad.dir}/no-such.c",
     ["{bad.dir}/no-such.c: cannot read"]),
    ("clean-reference-binary", "clean --model {tiny} --input {bad.not_c_txt} --reference {bad.random_c}",
     ["{bad.random_c}: a binary file"]),
    ("calibrate-no-reference", "calibrate --model {tiny} --data {bad.no_clean_jsonl}",
     ["{bad.no_clean_jsonl}: no records with a clean reference to calibrate on"]),
    ("build-no-such-project", "data build --corpus {bad.corpus_jsonl} --projects beta --out {out}",
     ["{bad.corpus_jsonl}: no function of the chosen projects and lengths"]),
    ("init-tiny-transfer-other-shape", "model init-tiny --out {out} --transfer_from {tiny}",
     ["transfer_from: {tiny} has another shape than the new model (hidden_size 192 here, 64 there"]),
    ("init-tiny-transfer-missing", "model init-tiny --out {out} --transfer_from {bad.dir}/no-such-model",
     ["{bad.dir}/no-such-model: no such model folder"]),
    ("clean-lora-other-shape", "clean --run {models.lora_other_shape} --input {bad.not_c_txt}",
     ["does not fit its base model", "size mismatch"]),
    ("clean-lora-other-tokenizer", "clean --run {models.lora_other_tok} --input {bad.not_c_txt}",
     ["its tokenizer differs from the one of its base model", "trained on another base model"]),
    ("clean-full-config-of-another", "clean --model {models.mixed_config} --input {bad.not_c_txt}",
     ["{models.mixed_config}: its weights do not match its config.json"]),
    ("clean-full-tokenizer-of-another", "clean --model {models.mixed_tok} --input {bad.not_c_txt}",
     ["{models.mixed_tok}: its tokenizer has", "tokens but the model only 512 embeddings"]),
    ("eval-huge-function", "eval --model {tiny} --data {bad.huge_jsonl} --out {out}",
     ["{bad.huge_jsonl}: record 'big': input:", "window of 1024 tokens"]),
    ("eval-k0", "eval --model {tiny} --data {bad.data}/test.jsonl --k 0 --out {out}", ["k: need at least 1"]),
    ("eval-gzip", "eval --model {tiny} --data {bad.gzip_jsonl} --out {out}", ["gzip-compressed"]),
    ("eval-zero-records", "eval --model {tiny} --data {bad.empty_jsonl} --out {out}", ["no records"]),
    ("eval-model-missing", "eval --model {bad.dir}/no-such-model --data {bad.data}/test.jsonl --out {out}",
     ["no such model folder"]),
    ("defend-k0", "defend --victim {victim} --cleaner {tiny} --k 0 --data {bad.data}/test.jsonl --out {out}",
     ["k: need at least 1"]),
    ("defend-victim-missing",
     "defend --victim {bad.dir}/no-victim --data {bad.data}/test.jsonl --defenses none --out {out}",
     ["{bad.dir}/no-victim: no such victim classifier folder"]),
    ("defend-victim-not-a-classifier",
     "defend --victim {tiny} --target_label 0 --data {bad.data}/test.jsonl --defenses none --out {out}",
     ["{tiny}: a LlamaForCausalLM, not a sequence-classification model"]),
    ("defend-huge-function",
     "defend --victim {victim} --cleaner {tiny} --data {bad.huge_jsonl} --defenses fabe --out {out}",
     ["{bad.huge_jsonl}: record 'big': input:"]),
]


def _fill(text: str, **values) -> str:
    return text.format(**values)


@pytest.fixture
def names(tmp_path, bad, models, tiny_model_dir, small_victim) -> dict:
    return dict(bad=bad, models=models, tiny=tiny_model_dir, victim=small_victim, run=tmp_path / "run",
                out=tmp_path / "out")


@pytest.mark.parametrize("case, argv, expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_a_located_message_and_writes_nothing(capsys, names, case, argv, expected):
    code, err = _cli(capsys, _fill(argv, **names).split())
    assert code == 1, err
    for text in expected:
        assert _fill(text, **names) in err, err
    assert "Traceback" not in err
    assert not names["run"].exists() and not names["out"].exists()


SUBPROCESS_CASES = ["train-zero-records", "train-negative-lr-flag", "clean-gzip", "eval-k0",
                    "defend-victim-not-a-classifier"]


def test_python_m_fabe_exits_nonzero_with_the_message_and_no_traceback(tmp_path, names):
    """The real entry point, for one case of each command (run side by side)."""
    cases = {c[0]: c for c in CLI_CASES if c[0] in SUBPROCESS_CASES}
    procs = {}
    for case, (_, argv, _) in cases.items():
        values = {**names, "run": tmp_path / case / "run", "out": tmp_path / case / "out"}
        procs[case] = (values, subprocess.Popen([sys.executable, "-m", "fabe", *_fill(argv, **values).split()],
                                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for case, (values, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (case, err)
        assert all(_fill(text, **values) in err for text in cases[case][2]), (case, err)
        assert "Traceback" not in err, case
        assert not values["run"].exists() and not values["out"].exists(), case


# ---------------------------------------------------------------- the Python API

def test_dataset_binary_and_empty_files_raise_dataset_errors_naming_the_file(bad):
    """Malformed records are covered rule by rule in tests/test_dataset.py; here what it lacks."""
    for path, message in [(bad.random_jsonl, "a binary file (NUL byte at offset"),
                          (bad.gzip_jsonl, "a gzip-compressed file, not text (decompress it first)"),
                          (bad.empty_jsonl, "no records")]:
        with pytest.raises(DatasetError) as info:
            load_records(path)
        assert len(info.value.errors) == 1 and str(info.value).startswith(f"{path}: {message}")
    with pytest.raises(DatasetError, match=r"latin1.jsonl:2: encoding: not UTF-8"):
        load_records(bad.latin1_jsonl)


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": -1e-3}, "learning_rate: invalid value -0.001"),
    ({"learning_rate": float("inf")}, "learning_rate: invalid value inf"),
    ({"beta": float("nan")}, "beta: invalid value nan"),
    ({"mode": "simple", "beta": 0.5}, "beta: 0.5 would be ignored: simple mode trains the MLE loss only"),
])
def test_train_config_names_the_bad_field(kwargs, message):
    from fabe.training.config import TrainConfig

    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TrainConfig(data="d", **kwargs)


def test_beta_is_accepted_in_simple_mode_only_at_its_default_or_zero():
    from fabe.training.config import TrainConfig

    assert TrainConfig(data="d", mode="simple").beta == 0.3
    assert TrainConfig(data="d", mode="simple", beta=0.0).beta == 0.0
    assert TrainConfig(data="d", mode="full", beta=0.5).beta == 0.5


def test_a_flag_overrides_a_bad_file_value_and_is_then_not_blamed_on_the_file(bad):
    from fabe.training.config import resolve_config

    cfg = resolve_config(["--config", str(bad.negative_lr_yaml), "--learning_rate", "1e-4"])
    assert cfg.learning_rate == 1e-4
    with pytest.raises(ValueError) as info:
        resolve_config(["--config", str(bad.negative_lr_yaml), "--learning_rate", "-2"])
    assert str(info.value) == "learning_rate: invalid value -2.0"


def test_resume_refuses_another_base_model(tmp_path, tiny_model_dir, models, capsys):
    from fabe.training.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(data="d", model=str(tiny_model_dir), out=str(run))
    (run / "config.json").write_text(json.dumps({"train": asdict(cfg)}))
    before = (run / "config.json").read_text()
    code, err = _cli(capsys, ["train", "--run", str(run), "--resume", "--model", str(models.mixed_config)])
    assert code == 1 and f"model: the run in {run} was trained from '{tiny_model_dir}'" in err, err
    assert (run / "config.json").read_text() == before


@pytest.mark.parametrize("case", ["zero-records", "model-missing", "not-a-model", "huge-function"])
def test_train_and_launch_refuse_before_creating_a_run(tmp_path, bad, tiny_model_dir, case):
    from fabe.training.config import TrainConfig
    from fabe.training.run import train

    data, model, error, message = {
        "zero-records": (bad.empty_jsonl, tiny_model_dir, DatasetError, "no records"),
        "model-missing": (bad.data, bad.dir / "nope", ModelLoadError, "no such model folder"),
        "not-a-model": (bad.data, bad.not_a_model, ModelLoadError, "no config.json"),
        "huge-function": (bad.huge_jsonl, tiny_model_dir, ValueError, "no record fits max_length 256"),
    }[case]
    cfg = TrainConfig(data=str(data), model=str(model), max_length=256, out=str(tmp_path / "run"))
    with pytest.raises(error, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=message):
        runs.launch(cfg, "cpu", tmp_path / "runs", "x")
    assert not (tmp_path / "runs" / "x").exists()
    assert any(message in p for p in runs.check_launch(cfg, "cpu"))


def test_clean_refuses_empty_binary_and_huge_code_and_mismatched_models(bad, models, tiny_model_dir):
    from fabe.cleaning.cleaner import Cleaner, CleanConfig, InputTooLong, read_code_file

    cleaner = Cleaner.load(tiny_model_dir)
    for code, error, message in [("  \n", ValueError, "code: empty input"),
                                 ("int f(void)\x00\x01", ValueError, "code: holds NUL characters"),
                                 (bad.huge_c.read_text(), InputTooLong, "window of 1024 tokens")]:
        with pytest.raises(error, match=message):
            cleaner.clean(code, CleanConfig(k=2, max_new_tokens=4))
    with pytest.raises(ValueError, match="k: need at least 1 candidate, got 0"):
        CleanConfig(k=0)
    for path, message in [(bad.random_c, ": a binary file"), (bad.gzip_c, ": a gzip-compressed file"),
                          (bad.latin1_c, ":1: not UTF-8 text"), (bad.dir / "none.c", ": cannot read")]:
        with pytest.raises(ValueError) as info:
            read_code_file(path)
        assert str(info.value).startswith(f"{path}{message}")
    for source, message in [(bad.dir / "none", "no such model folder"), (bad.not_a_model, "no config.json"),
                            (models.lora_other_shape, "does not fit its base model"),
                            (models.lora_other_tok, "trained on another base model"),
                            (models.mixed_config, "weights do not match its config.json"),
                            (models.mixed_tok, "tokenizer and the weights come from different models")]:
        with pytest.raises(ModelLoadError, match=message):
            Cleaner.load(source)


def test_a_run_without_final_is_named_as_such(tmp_path):
    from fabe.cleaning.cleaner import Cleaner

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "status.json").write_text('{"state": "failed"}')
    with pytest.raises(ModelLoadError, match="a run directory without final/"):
        Cleaner.load(tmp_path)


def test_a_failed_eval_or_defense_leaves_the_previous_results_intact(tmp_path, bad, tiny_model_dir, small_victim):
    from fabe.cleaning.cleaner import CleanConfig, InputTooLong
    from fabe.defense.defenses import run_defense
    from fabe.evaluation.runner import run_eval

    out = tmp_path / "results"
    out.mkdir()
    saved = {name: f"previous {name}" for name in ("eval.json", "records.csv", "defense.json", "outcomes.csv")}
    for name, text in saved.items():
        (out / name).write_text(text)
    with pytest.raises(InputTooLong, match="record 'big': input:"):
        run_eval(tiny_model_dir, bad.huge_jsonl, CleanConfig(k=2), out=out)
    with pytest.raises(ValueError, match="k: need at least 1"):
        run_defense(str(small_victim), str(tiny_model_dir), bad.data / "test.jsonl", ["fabe"], k=0, out=out)
    with pytest.raises(ValueError, match="not a sequence-classification model"):
        run_defense(str(tiny_model_dir), None, bad.data / "test.jsonl", ["none"], target=0, out=out)
    assert {p.name: p.read_text() for p in out.iterdir()} == saved


# ---------------------------------------------------------------- the page

@pytest.fixture(scope="module")
def page(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("page-runs")
    with served_app(runs_dir, [tmp_path_factory.getbasetemp()]) as client:
        yield SimpleNamespace(client=client, runs_dir=runs_dir)


def _launch(client, **options) -> str:
    """The Launch button's message; the page's /launch takes the form's options by name."""
    return client.predict(**options, gpus=[], run_name="bad", api_name="/launch")[0]


def test_train_tab_check_and_launch_show_the_library_message_and_create_no_run(page, bad, tiny_model_dir):
    for path, message in [(bad.gzip_jsonl, "gzip-compressed"), (bad.empty_jsonl, "no records"),
                          (bad.missing_score_jsonl, f"{bad.missing_score_jsonl}:1: score: missing")]:
        shown = page.client.predict(str(path), api_name="/check_dataset")[0]
        assert "Dataset errors" in shown and message in shown, shown
    cases = [(dict(data=str(bad.empty_jsonl), model=str(tiny_model_dir)), "no records"),
             (dict(data=str(bad.data), model=str(bad.dir / "no-model")), "model: "),
             (dict(data=str(bad.data), model=str(bad.not_a_model)), "no config.json"),
             (dict(data=str(bad.data), model=str(tiny_model_dir), mode="simple", beta=0.5),
              "beta: 0.5 would be ignored"),
             (dict(data=str(bad.data), model=str(tiny_model_dir), learning_rate=-0.1),
              "learning_rate: invalid value -0.1")]
    for values, message in cases:
        shown = _launch(page.client, **values)
        assert shown.startswith("**Cannot launch:**") and message in shown, shown
    assert not (page.runs_dir / "bad").exists()


def test_a_launch_reports_every_problem_of_the_form_at_once(page, bad):
    shown = _launch(page.client, data=str(bad.missing_score_jsonl), model=str(bad.dir / "no-model"), batch_size=0,
                    mode="simple", beta=0.5, alpha=None)
    for message in ("batch_size: invalid value 0", "beta: 0.5 would be ignored", "alpha: give a value",
                    f"{bad.missing_score_jsonl}:1: score: missing", "no such model folder"):
        assert message in shown, shown
    assert not (page.runs_dir / "bad").exists()


def test_clean_tab_says_what_is_wrong_with_the_code_or_the_model(page, bad, models, tiny_model_dir):
    def clean(source, code, k=2):
        return page_message(lambda: page.client.predict(str(source), code, k, 0.5, "diverse_beam", 4, api_name="/clean"))

    assert "input is empty" in clean(tiny_model_dir, "  \n")
    assert "NUL characters" in clean(tiny_model_dir, "int f(void)\x00")
    assert "does not parse as C; cleaned anyway" in clean(tiny_model_dir, bad.not_c_txt.read_text())
    assert "Input too long" in clean(tiny_model_dir, "int f(void)\n{\n" + "    x = x + 1;\n" * 5000 + "}")
    assert "less than minimum value 1" in clean(tiny_model_dir, CODE, k=0)
    for source, message in [(bad.dir / "no-model", "no such model folder"), (bad.not_a_model, "no config.json"),
                            (models.lora_other_shape, "does not fit its base model"),
                            (models.lora_other_tok, "trained on another base model")]:
        shown = clean(source, CODE)
        assert shown.startswith("**Cannot load**") and message in shown, shown


@pytest.mark.parametrize("name", ["random_c", "gzip_c", "latin1_c"])
def test_clean_tab_upload_of_a_binary_file_is_refused_by_name(page, bad, name):
    from gradio_client import handle_file

    path = getattr(bad, name)
    shown = page_message(lambda: page.client.predict(handle_file(str(path)), api_name="/on_upload"))
    assert path.name in shown and ("binary" in shown or "gzip" in shown or "not UTF-8" in shown), shown


def test_evaluate_and_defense_tabs_refuse_and_save_nothing(page, bad, tiny_model_dir, small_victim):
    def evaluate(split, k=2):
        return page_message(lambda: page.client.predict([str(tiny_model_dir)], str(split), 0, k, "beam", 4, None,
                                                        api_name="/evaluate"))

    def defend(victim, split, k=2):
        return page_message(lambda: page.client.predict(str(victim), str(tiny_model_dir), str(split), ["fabe", "none"],
                                                        0, k, api_name="/defend"))

    assert "k: need at least 1" in evaluate(bad.data / "test.jsonl", k=0)
    assert "gzip-compressed" in evaluate(bad.gzip_jsonl)
    assert "record 'big': input:" in evaluate(bad.huge_jsonl)
    assert "k: need at least 1" in defend(small_victim, bad.data / "test.jsonl", k=0)
    assert "not a sequence-classification model" in defend(tiny_model_dir, bad.data / "test.jsonl")
    assert "no records" in defend(small_victim, bad.empty_jsonl)
    assert not list(page.runs_dir.glob("**/eval.json")) and not list(page.runs_dir.glob("**/defense.json"))
