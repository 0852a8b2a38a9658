"""Tests for fabe.data.jsonio: the JSON-lines and JSON-list readers (lines, bad bytes, bad JSON),
whole-file UTF-8 decoding, the problem collector and the capped InputError message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabe.data.jsonio import (UNPARSED, InputError, Problems, decode_line, iter_json_list,
                         iter_jsonl, json_type, read_utf8)


def items(path: Path, reader=None) -> list[tuple]:
    reader = reader or (iter_jsonl if path.suffix == ".jsonl" else iter_json_list)
    return [(line, "UNPARSED" if value is UNPARSED else value, problems)
            for line, value, problems in reader(path)]


def test_jsonl_lines_blank_lines_bom_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n  \r\n[2]\r\n{"b": \n"x"')
    assert items(path) == [
        (1, {"a": 1}, []),
        (4, [2], []),
        (5, "UNPARSED", [("json", "Expecting value at column 7")]),
        (6, "x", []),
    ]


def test_jsonl_bad_bytes_keep_the_value_and_name_the_column(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n"\xc3\xa9\xff"\n{\xfe\n')
    assert items(path) == [
        (1, {"a": 1}, []),
        (2, "\u00e9\ufffd", [("encoding", "not UTF-8 (byte 0xff at column 3)")]),
        (3, "UNPARSED", [("encoding", "not UTF-8 (byte 0xfe at column 2)"),
                         ("json", "Expecting property name enclosed in double quotes at column 2")]),
    ]


@pytest.mark.parametrize("reader", [iter_jsonl, iter_json_list])
def test_unreadable_file_is_one_item_without_a_line(tmp_path: Path, reader) -> None:
    ((line, value, problems),) = list(reader(tmp_path / "missing.json"))
    assert line is None and value is UNPARSED
    assert problems == [("file", "cannot read: No such file or directory")]


def test_json_list_elements_start_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('\ufeff[\n  {"a": 1,\n   "b": 2},\n\n  3, "x"\n  , []\n]\n', encoding="utf-8")
    assert items(path) == [(2, {"a": 1, "b": 2}, []), (5, 3, []), (5, "x", []), (6, [], [])]


@pytest.mark.parametrize("text, expected", [
    ("", []),
    (" \n\t", []),
    ("[ ]", []),
    ("{}", [(1, "UNPARSED", [("json", "expected a JSON list, got object")])]),
    ("\n\n17", [(1, "UNPARSED", [("json", "expected a JSON list, got number")])]),
    ("\n{oops", [(2, "UNPARSED", [("json", "Expecting property name enclosed in double quotes "
                                           "at column 2")])]),
    ("[1,\n 2\n 3]", [(1, 1, []), (2, 2, []),
                      (3, "UNPARSED", [("json", "expected ',' or ']' after a list element "
                                                "at column 2")])]),
    ("[1,\n oops]", [(1, 1, []), (2, "UNPARSED", [("json", "Expecting value at column 2")])]),
    ("[1]\n[2]", [(1, 1, []), (2, "UNPARSED", [("json", "extra data after the list at column 1")])]),
    ("[1", [(1, 1, []), (1, "UNPARSED", [("json", "expected ',' or ']' after a list element "
                                                  "at column 3")])]),
])
def test_json_list_shapes_and_errors(tmp_path: Path, text: str, expected: list) -> None:
    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    assert items(path) == expected


def test_json_list_bad_bytes_come_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(b'[\n"\xff",\n{"a":\n "\xfe"},\n 5\n]\n\xfd')
    bad = [("encoding", "not UTF-8 (byte 0x{:02x} at column {})".format(b, c))
           for b, c in ((0xff, 2), (0xfe, 3), (0xfd, 1))]
    assert items(path) == [
        (2, "\ufffd", [bad[0]]),  # a bad byte on the element's first line goes with it
        (3, {"a": "\ufffd"}, []),
        (4, "UNPARSED", [bad[1]]),  # one inside an element comes after it, on its own line
        (5, 5, []),
        (7, "UNPARSED", [bad[2], ("json", "extra data after the list at column 1")]),
    ]


def test_read_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.c"
    path.write_bytes(b"\xef\xbb\xbfint a;\r\n/* caf\xe9 */\nint b;\n")
    assert read_utf8(path) == ("int a;\r\n/* caf\ufffd */\nint b;\n",
                               [(2, "not UTF-8 (byte 0xe9 at column 7)")])
    path.write_bytes(b"ok\n")
    assert read_utf8(path) == ("ok\n", [])
    with pytest.raises(OSError):
        read_utf8(tmp_path / "missing.c")


def test_decode_line_counts_characters() -> None:
    assert decode_line("é".encode()) == ("é", None)
    assert decode_line("éé".encode() + b"\x80x") == ("éé\ufffdx", "not UTF-8 (byte 0x80 at column 3)")


def test_json_type() -> None:
    values = [None, True, 1, 1.5, "s", [1], {"a": 1}]
    assert [json_type(v) for v in values] == ["null", "boolean", "number", "number", "string",
                                              "list", "object"]
    assert [json_type(json.loads(json.dumps(v))) for v in values] == [json_type(v) for v in values]


def test_problems_collects_formats_and_keeps_the_first() -> None:
    problems = Problems("data.jsonl", keep=2)
    assert not problems
    problems.add(3, "json", "bad")
    problems.extend(4, [("a", "x"), ("b", "y")])
    problems.add(None, "file", "gone", file="other.c")
    assert problems and problems.count == 4
    assert problems.errors == ["data.jsonl:3: json: bad", "data.jsonl:4: a: x"]
    with pytest.raises(InputError) as info:
        problems.raise_if_any()
    assert info.value.errors == problems.errors and info.value.total == 4
    assert str(info.value) == ("4 problems in data.jsonl:\ndata.jsonl:3: json: bad\n"
                               "data.jsonl:4: a: x\n... and 2 more")
    Problems("empty").raise_if_any()  # nothing to raise


def test_input_error_message() -> None:
    assert str(InputError("f: no such file")) == "f: no such file"
    one = Problems("f")
    one.add(1, "json", "bad")
    with pytest.raises(InputError) as info:
        one.raise_if_any()
    assert str(info.value) == "f:1: json: bad"  # no heading for a single problem
    many = InputError([f"f:{i}: x: y" for i in range(23)], source="f")
    lines = str(many).splitlines()
    assert lines[0] == "23 problems in f:" and lines[1:21] == many.errors[:20]
    assert lines[-1] == "... and 3 more" and len(lines) == 22 and isinstance(many, ValueError)
