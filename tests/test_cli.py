"""The CLI contract later issues and users rely on, run as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fabe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fabe", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "data"
    result = fabe("data", "build", "--corpus", "generated", "--n", "60", "--triggers",
                  "fixed,grammar,ident_var", "--out", str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "records" in result.stdout and "build train" in result.stderr  # stats + tqdm progress
    return out


def test_build_writes_three_splits(data_dir):
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "dataset.json", "test.jsonl", "train.jsonl", "valid.jsonl"]


def test_check_good_file_and_folder(data_dir):
    result = fabe("data", "check", str(data_dir / "train.jsonl"))
    assert result.returncode == 0 and "OK" in result.stdout
    result = fabe("data", "check", str(data_dir))
    assert result.returncode == 0 and result.stdout.count("OK") == 3


def test_check_bad_file_names_file_line_field(data_dir, tmp_path):
    lines = (data_dir / "train.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["score"] = bad["score"][:-1]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    result = fabe("data", "check", str(path))
    assert result.returncode == 1
    assert f"{path}:2: score:" in result.stderr and result.stdout == ""


def test_stats_json_with_tokenizer(data_dir, tiny_model_dir):
    result = fabe("data", "stats", str(data_dir / "valid.jsonl"), "--json",
                  "--tokenizer", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout).values()
    assert stats["records"] > 0 and stats["tokens"]["input"]["p50"] > 0
    assert set(stats["trigger_kinds"]) <= {"fixed", "grammar", "ident_var", "none"}


def test_init_tiny(tmp_path):
    out = tmp_path / "tiny"
    result = fabe("model", "init-tiny", "--out", str(out), "--corpus_n", "200", "--vocab_size",
                  "400", "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2",
                  "--intermediate_size", "64")
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    again = fabe("model", "init-tiny", "--out", str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_bad_flags_and_usage(tmp_path):
    result = fabe("data", "build", "--out", str(tmp_path / "x"), "--triggers", "bogus")
    assert result.returncode == 1 and "Unknown trigger kind" in result.stderr
    assert not (tmp_path / "x").exists()
    result = fabe("nope")
    assert result.returncode == 2 and "data build" in result.stderr
    assert fabe("--help").returncode == 0
