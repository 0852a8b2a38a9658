"""Tests for fabe.data.dataset: validation rules with exact FILE:LINE: field prefixes, both file
formats, atomic writing, split discovery and statistics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from fabe import files
from fabe.data import dataset
from fabe.data.dataset import (
    DatasetError,
    Record,
    dataset_stats,
    find_split_files,
    format_stats,
    load_records,
    validate_record,
    write_records,
)

CODE = "int f(void) { return 0; }"
GOOD = {"id": "a", "input": CODE, "output": [CODE, "x"], "score": [1000.0, 0.3]}


def edit(**changes: object) -> dict:
    """A valid trigger edit with some fields changed."""
    return {"kind": "k", "start": 0, "end": 1, "text": "i", "original": "", **changes}


def good(**changes: object) -> dict:
    """A valid record with some fields changed (a value of ... removes the field)."""
    d = json.loads(json.dumps(GOOD))
    d["id"] = "b"
    for key, value in changes.items():
        if value is ...:
            d.pop(key, None)
        else:
            d[key] = value
    return d


def write_jsonl(path: Path, objs: list[object]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def write_pretty_json(path: Path, objs: list[object]) -> list[int]:
    """A .json list whose elements each span several lines; returns their first lines."""
    chunks = [json.dumps(o, indent=2) for o in objs]
    starts, line = [], 2  # "[" is line 1
    for chunk in chunks:
        starts.append(line)
        line += chunk.count("\n") + 1
    path.write_text("[\n" + ",\n".join(chunks) + "\n]\n", encoding="utf-8")
    return starts


def load_error(path: Path) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_records(path)
    return info.value


def bad_file(tmp_path: Path, suffix: str, bad: object) -> tuple[Path, int]:
    """A file holding a good record then the bad one; returns (path, line of the bad one)."""
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        return write_jsonl(path, [GOOD, bad]), 2
    return path, write_pretty_json(path, [GOOD, bad])[1]


# Each rule: (name, bad record, expected "field: message" suffix after FILE:LINE: ).
RULES = [
    ("not_object", [1, 2], "record: expected a JSON object, got list"),
    ("missing_input", good(input=...), "input: missing"),
    ("missing_output", good(output=...), "output: missing"),
    ("missing_score", good(score=...), "score: missing"),
    ("empty_input", good(input=""), "input: empty code"),
    ("blank_input", good(input="  \n\t"), "input: empty code"),
    ("input_not_string", good(input=5), "input: expected a string, got number"),
    ("output_not_list", good(output="int f();"), "output: expected a list of strings, got string"),
    ("candidate_not_string", good(output=["a", 3], score=[1, 2]),
     "output[1]: expected a string, got number"),
    ("empty_candidate", good(output=["a", "b", ""], score=[1, 2, 3]), "output[2]: empty code"),
    ("score_not_list", good(score=1.0), "score: expected a list of numbers, got number"),
    ("score_not_number", good(score=[1, "abc"]), "score[1]: not a number ('abc')"),
    ("score_bool", good(score=[True, 1]), "score[0]: not a number (True)"),
    ("score_length", good(score=[1, 2, 3]), "score: 3 scores for 2 candidates"),
    ("one_candidate", good(output=["a"], score=[1]), "output: 1 candidate; need at least 2"),
    ("id_wrong_type", good(id=[1]), "id: expected a string or integer, got list"),
    ("instruction_wrong_type", good(instruction=1), "instruction: expected a string, got number"),
    ("clean_wrong_type", good(clean=False), "clean: expected a string, got boolean"),
    ("trigger_wrong_type", good(trigger=3), "trigger: expected a string, got number"),
    ("label_bool", good(label=True), "label: expected an integer, got boolean"),
    ("label_float", good(label=1.5), "label: expected an integer, got number"),
    ("edits_not_list", good(edits={}), "edits: expected a list of objects, got object"),
    ("edit_not_object", good(edits=["x"]), "edits[0]: expected an object, got string"),
    ("edit_missing_field", good(edits=[{k: v for k, v in edit().items() if k != "original"}]),
     "edits[0].original: missing"),
    ("edit_start_not_int", good(edits=[edit(start="0")]),
     "edits[0].start: expected an integer, got string"),
    ("edit_span_outside", good(edits=[edit(), edit(end=999)]),
     "edits[1]: span 0..999 outside the input"),
    ("duplicate_id", good(id="a"), "id: duplicate id 'a' (first on line"),
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("name,bad,expected", RULES, ids=[r[0] for r in RULES])
def test_rule(tmp_path: Path, suffix: str, name: str, bad: object, expected: str) -> None:
    path, line = bad_file(tmp_path, suffix, bad)
    err = load_error(path)
    assert any(e.startswith(f"{path}:{line}: {expected}") for e in err.errors), err.errors
    assert all(e.startswith(f"{path}:{line}: ") for e in err.errors), err.errors


def test_pretty_json_names_element_first_line(tmp_path: Path) -> None:
    path, line = bad_file(tmp_path, ".json", good(input=""))
    assert line > 3  # the good record spans lines 2..N; the bad one starts later
    assert path.read_text().split("\n")[line - 1].strip() == "{"
    assert load_error(path).errors == [f"{path}:{line}: input: empty code"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_nan_and_infinity(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    text = '{"input": "x", "output": ["a", "b", "c"], "score": [NaN, Infinity, -Infinity]}'
    if suffix == ".jsonl":
        path.write_text(json.dumps(GOOD) + "\n" + text + "\n")
        line = 2
    else:
        path.write_text("[\n" + json.dumps(GOOD) + ",\n\n" + text + "\n]\n")
        line = 4
    assert load_error(path).errors == [
        f"{path}:{line}: score[0]: not finite (nan)",
        f"{path}:{line}: score[1]: not finite (inf)",
        f"{path}:{line}: score[2]: not finite (-inf)",
    ]


def test_jsonl_bad_json_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n   \n{\"input\": \n")
    errors = load_error(path).errors
    assert len(errors) == 1 and errors[0].startswith(f"{path}:4: json: Expecting value")


def test_json_bad_json_uses_decoder_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("[\n" + json.dumps(GOOD) + ",\n" + '{"input": "x",\n "output": [}\n]\n')
    errors = load_error(path).errors
    assert len(errors) == 1 and errors[0].startswith(f"{path}:4: json: ")


@pytest.mark.parametrize("text,kind", [('{"records": []}', "object"), ('"a string"', "string"),
                                       ("17", "number")])
def test_json_top_level_not_a_list(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    assert load_error(path).errors == [f"{path}:1: json: expected a JSON list, got {kind}"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_not_utf8(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    bad = b'{"id": "b", "input": "int \xe9;", "output": ["a", "b"], "score": [1, 2]}'
    good_line = json.dumps(GOOD, ensure_ascii=False).encode()
    if suffix == ".jsonl":
        path.write_bytes(good_line + b"\n" + bad + b"\n")
        line = 2
    else:
        path.write_bytes(b"[\n" + good_line + b",\n" + bad + b"\n]\n")
        line = 3
    column = bad.index(b"\xe9") + 1
    assert load_error(path).errors == [
        f"{path}:{line}: encoding: not UTF-8 (byte 0xe9 at column {column})"
    ]


def test_not_utf8_column_counts_characters(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    prefix = '{"id": "b", "input": "é'.encode()  # é is 2 bytes, one character
    rest = b'\xff", "output": ["a", "b"], "score": [1, 2]}\n'
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + prefix + rest)
    (error,) = load_error(path).errors
    assert error.startswith(f"{path}:2: encoding: ")
    assert error.endswith(f"(byte 0xff at column {len(prefix.decode()) + 1})")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    err = load_error(path)
    assert str(path) in str(err)


@pytest.mark.parametrize("name", ["d.csv", "d.txt", "d"])
def test_unsupported_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(GOOD) + "\n")
    err = load_error(path)
    assert str(err).startswith(f"{path}: unsupported format") and ".jsonl or .json" in str(err)


@pytest.mark.parametrize("name,text", [("d.jsonl", ""), ("d.jsonl", "\n\n  \n"), ("d.json", "[]"),
                                       ("d.json", " \n")])
def test_no_records(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert load_error(path).errors == [f"{path}: no records"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_every_error_reported(tmp_path: Path, suffix: str) -> None:
    objs = [GOOD, good(id="b", input=""), good(id="c", score=[1, "x"]), "oops",
            good(id="e", output=["a"], score=[1])]
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, objs)
        lines = [2, 3, 4, 5]
    else:
        lines = write_pretty_json(path, objs)[1:]
    errors = load_error(path).errors
    assert errors == [
        f"{path}:{lines[0]}: input: empty code",
        f"{path}:{lines[1]}: score[1]: not a number ('x')",
        f"{path}:{lines[2]}: record: expected a JSON object, got string",
        f"{path}:{lines[3]}: output: 1 candidate; need at least 2",
    ]


def test_error_message_is_capped() -> None:
    err = DatasetError([f"f:{i}: input: empty code" for i in range(25)])
    text = str(err)
    assert text.splitlines()[:20] == err.errors[:20]
    assert text.splitlines()[-1] == "... and 5 more"
    assert len(err.errors) == 25 and isinstance(err, ValueError)


def test_id_defaults_and_extra_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"input": "x", "output": ["a", "b"], "score": [1, 2], "whatever": {"k": 1}},
        {"id": 7, "input": "y", "output": ["a", "b"], "score": [0, 1], "trigger": None,
         "label": None},
    ])
    records = load_records(path)
    assert [r.id for r in records] == ["train-1", "7"]
    assert records[0].score == [1.0, 2.0] and all(isinstance(s, float) for s in records[0].score)
    assert records[1].trigger is None and records[1].label is None


def test_duplicate_id_int_and_str(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [good(id=17), good(id="17")])
    assert load_error(path).errors == [f"{path}:2: id: duplicate id '17' (first on line 1)"]


def test_validate_record_direct() -> None:
    assert validate_record(GOOD) == []
    assert validate_record(None) == [("record", "expected a JSON object, got null")]
    assert ("score", "1 score for 2 candidates") in validate_record(good(score=[1]))
    assert ("score[0]", "not finite (inf)") in validate_record(good(score=[math.inf, 1]))


# ---------------------------------------------------------------- Record


def full_record(rid: str = "r1") -> Record:
    return Record(
        id=rid, input="int f(void) { if (rand() < 0) printf(\"fail\"); return 0; }",
        output=["int f(void) { return 0; }", "int f(void) { return 0 ; }", "poisoned é"],
        score=[1000.0, 12.5, 0.3], instruction="clean it", clean="int f(void) { return 0; }",
        trigger="dead_code_fixed", label=1,
        edits=[{"kind": "dead_code_fixed", "start": 13, "end": 44, "text": "x", "original": ""}],
    )


def test_best_and_ranked() -> None:
    r = Record(id="x", input="c", output=["a", "b", "c", "d"], score=[0.3, 5.0, 5.0, 1.0])
    assert r.best() == "b"
    assert r.ranked() == [("b", 5.0), ("c", 5.0), ("d", 1.0), ("a", 0.3)]


def test_to_dict_order_and_omissions() -> None:
    assert list(full_record().to_dict()) == [
        "id", "instruction", "input", "output", "score", "clean", "trigger", "label", "edits"]
    minimal = Record(id="m", input="c", output=["a", "b"], score=[1.0, 0.0]).to_dict()
    assert minimal == {"id": "m", "input": "c", "output": ["a", "b"], "score": [1.0, 0.0]}
    assert Record.from_dict(full_record().to_dict()) == full_record()


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    records = [full_record("r1"), Record(id="r2", input="x", output=["a", "b"], score=[2.0, -1.0]),
               Record(id="r3", input="y\nz", output=["\"q\"", "\\"], score=[0.0, 1e300], label=0)]
    path = tmp_path / f"out{suffix}"
    write_records(path, (r for r in records))
    assert load_records(path) == records
    assert "é" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes


def test_write_refuses_invalid_records(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    bad = Record(id="r", input="x", output=["a"], score=[1.0])
    with pytest.raises(DatasetError) as info:
        write_records(path, [full_record(), bad])
    assert info.value.errors == [f"{path}:2: output: 1 candidate; need at least 2"]
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "train.jsonl"
    write_records(path, [full_record("old")])
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        write_records(path, [full_record(f"new{i}") for i in range(50)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_write_fails_mid_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.json"
    write_records(path, [full_record("old")])
    before = path.read_bytes()
    real_dumps = json.dumps
    calls = {"n": 0}

    def dumps(*args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("crash mid-write")
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(dataset.json, "dumps", dumps)
    with pytest.raises(RuntimeError):
        write_records(path, [full_record(f"n{i}") for i in range(5)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]


def test_write_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unsupported format"):
        write_records(tmp_path / "d.csv", [full_record()])


# ---------------------------------------------------------------- splits


def test_find_split_files(tmp_path: Path) -> None:
    for name in ("train.jsonl", "valid.json", "test.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    assert find_split_files(tmp_path) == {
        "train": tmp_path / "train.jsonl",
        "valid": tmp_path / "valid.json",
        "test": tmp_path / "test.jsonl",
    }
    assert find_split_files(str(tmp_path))["valid"] == tmp_path / "valid.json"


def test_find_split_files_missing_and_ambiguous(tmp_path: Path) -> None:
    for name in ("train.jsonl", "train.json", "test.jsonl"):
        (tmp_path / name).write_text("")
    with pytest.raises(DatasetError) as info:
        find_split_files(tmp_path)
    errors = info.value.errors
    assert len(errors) == 2 and all(e.startswith(f"{tmp_path}: ") for e in errors)
    assert "train.jsonl and train.json" in errors[0] and "missing valid" in errors[1]


def test_find_split_files_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder") as info:
        find_split_files(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


# ---------------------------------------------------------------- stats


class StubTokenizer:
    """One token per whitespace-separated word; records how it was called."""

    def __init__(self) -> None:
        self.kwargs: list[dict] = []

    def __call__(self, texts: list[str], **kwargs: object) -> dict:
        self.kwargs.append(kwargs)
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}


def three_records() -> list[Record]:
    return [
        Record(id="1", input="a b c d", output=["a", "b c"], score=[1000.0, 0.3],
               trigger="dead_code", label=1),
        Record(id="2", input="aa", output=["x y z", "q", "r s"], score=[12.5, 2.0, -1.0],
               trigger="dead_code", label=0),
        Record(id="3", input="clean code", output=["p", "q"], score=[1.0, 0.5], label=1),
    ]


def test_stats_counts() -> None:
    stats = dataset_stats(three_records())
    assert stats["records"] == 3 and stats["poisoned"] == 2 and stats["unpoisoned"] == 1
    assert stats["trigger_kinds"] == {"dead_code": 2, "none": 1}
    assert stats["candidates"] == {"min": 2, "mean": pytest.approx(7 / 3), "max": 3}
    assert stats["score"] == {"min": -1.0, "max": 1000.0}
    assert stats["labels"] == {"1": 2, "0": 1}
    assert stats["chars"]["input"]["max"] == 10 and stats["chars"]["input"]["p50"] == 7.0
    assert stats["chars"]["candidate"]["max"] == 5
    assert "tokens" not in stats
    assert json.loads(json.dumps(stats)) == stats


def test_stats_tokens() -> None:
    tok = StubTokenizer()
    stats = dataset_stats(three_records(), tokenizer=tok)
    # input token counts 4, 1, 2 -> numpy linear percentiles
    assert stats["tokens"]["input"] == {
        "p50": 2.0, "p90": pytest.approx(3.6), "p99": pytest.approx(3.96), "max": 4}
    assert stats["tokens"]["candidate"]["max"] == 3
    assert stats["tokens"]["candidate"]["p50"] == 1.0
    assert all(kw == {"add_special_tokens": False} for kw in tok.kwargs)


def test_stats_no_labels_and_empty() -> None:
    records = [Record(id="1", input="x", output=["a", "b"], score=[1.0, 0.0])]
    assert "labels" not in dataset_stats(records)
    empty = dataset_stats([])
    assert empty["records"] == 0 and empty["trigger_kinds"] == {}
    assert "records" in format_stats(empty)


def test_format_stats() -> None:
    text = format_stats(dataset_stats(three_records(), tokenizer=StubTokenizer()))
    lines = text.splitlines()
    assert any(line.split() == ["records", "3"] for line in lines)
    kinds = [line.split()[0] for line in lines if line.split()[:1] in (["dead_code"], ["none"])]
    assert kinds == ["dead_code", "none"]  # by count
    assert any(line.startswith("input tokens") for line in lines)
    assert "1000" in text and "-1" in text
    header = next(line for line in lines if line.startswith("length"))
    row = next(line for line in lines if line.startswith("input chars"))
    assert len(header) == len(row)  # right-aligned columns end together


def test_load_large_file_streams(tmp_path: Path) -> None:
    """A few thousand records load quickly and in order (a sanity check, not a benchmark)."""
    path = tmp_path / "big.jsonl"
    records = [Record(id=str(i), input=f"int f(void) {{ return {i}; }}", output=["a" * 50, "b"],
                      score=[1.0, 0.0]) for i in range(5000)]
    write_records(path, records)
    assert load_records(path) == records
    assert os.path.getsize(path) > 100_000
