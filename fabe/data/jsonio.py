"""Strict reading of JSON input files, shared by the corpus and the dataset loaders.

`fabe.data.corpus` (Devign `.json`, CodeXGLUE `.jsonl`, `.c` folders) and `fabe.data.dataset`
(Tuna-format `.jsonl`/`.json`) both load user files all-or-nothing and report every problem
as `FILE:LINE: field: what is wrong`. This module holds the one implementation of what they
share, so the two report bad bytes, bad JSON and long error lists the same way:

* `iter_jsonl` and `iter_json_list` yield `(line, value, problems)` for each JSON line or
  list element, in line order, and never raise for a bad file: a value that is not valid
  JSON comes as `UNPARSED` with its problem, bytes that are not UTF-8 are reported on their
  line (and the rest still parsed, with U+FFFD in their place), an unreadable file is one
  item with line None. `.jsonl` files are streamed line by line.
* `read_utf8` decodes a whole file, naming the line and column of each bad byte.
* `Problems` collects the located messages of one input; `InputError` (the base of
  `CorpusError` and `DatasetError`) carries them and shows at most `MAX_SHOWN`.
"""

from __future__ import annotations

import codecs
import collections
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

MAX_SHOWN = 20  # problems an InputError shows (and a capped Problems keeps)
UNPARSED: Any = object()  # the value of an item that is not valid JSON
_WS = re.compile(r"[ \t\n\r]*")  # JSON whitespace, as the json module defines it

Problem = tuple[str, str]  # (field, what is wrong)
Item = tuple[int | None, Any, list[Problem]]  # (line or None for the file, value, problems)


class InputError(ValueError):
    """An input that cannot be used; `errors` lists its problems, `FILE:LINE: field: ...`.

    `total` counts every problem found (`errors` may keep only the first ones); with
    `source`, a message about several problems opens with "N problems in SOURCE:".
    """

    def __init__(self, errors: str | Iterable[str], *, total: int | None = None,
                 source: str | None = None):
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.total = len(self.errors) if total is None else total
        self.source = source
        super().__init__(self.errors)

    def __str__(self) -> str:
        head = f"{self.total} problems in {self.source}:\n" if self.source and self.total > 1 else ""
        shown = self.errors[:MAX_SHOWN]
        more = self.total - len(shown)
        return head + "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")


class Problems:
    """The problems found in one input, as `SOURCE:LINE: field: message` strings.

    Counts every problem; keeps the first `keep` of them (all when None).
    """

    def __init__(self, source: str, keep: int | None = None):
        self.source = source
        self.keep = keep
        self.errors: list[str] = []
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, line: int | None, field: str, message: str, file: str | None = None) -> None:
        """One problem at `line` (None: the whole file) of `file` (default: the source)."""
        self.count += 1
        if self.keep is None or len(self.errors) < self.keep:
            where = file or self.source
            where = where if line is None else f"{where}:{line}"
            self.errors.append(f"{where}: {field}: {message}")

    def extend(self, line: int | None, problems: Iterable[Problem]) -> None:
        """Several (field, message) problems at one line."""
        for field, message in problems:
            self.add(line, field, message)

    def raise_if_any(self, error: type[InputError] = InputError) -> None:
        """Raise every problem as one `error` (an InputError subclass) when there are any."""
        if self.count:
            raise error(self.errors, total=self.count, source=self.source)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type ("object", "list", "number", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 8192  # what `binary_kind` looks at


def binary_kind(head: bytes) -> str | None:
    """What a file whose first bytes are `head` is, when it is not text at all: a gzip
    archive or a binary file (NUL bytes never occur in UTF-8 JSON or C source). None for text.
    Said up front, so a user is not handed one encoding error per line of a binary file."""
    if head.startswith(GZIP_MAGIC):
        return "a gzip-compressed file, not text (decompress it first)"
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"a binary file (NUL byte at offset {nul}), not text"
    return None


def sniff_binary(path: str | Path) -> str | None:
    """`binary_kind` of a file's first bytes (None when it cannot be read: the readers say so)."""
    try:
        with open(path, "rb") as f:
            return binary_kind(f.read(SNIFF_BYTES))
    except OSError:
        return None


def unreadable(e: OSError) -> Problem:
    """The problem of a file that cannot be opened or read."""
    return "file", f"cannot read: {e.strerror or e}"


def decode_line(raw: bytes) -> tuple[str, str | None]:
    """One line decoded as UTF-8; with bad bytes, U+FFFD in their place and a message."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        column = len(raw[:e.start].decode("utf-8")) + 1
        message = f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {column})"
        return raw.decode("utf-8", errors="replace"), message


def read_utf8(path: str | Path) -> tuple[str, list[tuple[int, str]]]:
    """A whole file as text, without a leading byte order mark, and (line, message) per
    line holding bytes that are not UTF-8 (those bytes become U+FFFD). Raises OSError."""
    raw = Path(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    lines, bad = [], []
    for lineno, chunk in enumerate(raw.split(b"\n"), 1):
        text, message = decode_line(chunk)
        lines.append(text)
        if message:
            bad.append((lineno, message))
    return "\n".join(lines), bad


def _json_problem(e: json.JSONDecodeError) -> Problem:
    return "json", f"{e.msg} at column {e.colno}"


def iter_jsonl(path: str | Path) -> Iterator[Item]:
    """(line, value or UNPARSED, problems) for each non-blank line of a JSON-lines file."""
    try:
        f = open(path, "rb")
    except OSError as e:
        yield None, UNPARSED, [unreadable(e)]
        return
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if not raw.strip():
                continue
            text, bad = decode_line(raw.rstrip(b"\r\n"))  # columns stay on this line
            problems = [("encoding", bad)] if bad else []
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                yield lineno, UNPARSED, problems + [_json_problem(e)]
            else:
                yield lineno, value, problems


def iter_json_list(path: str | Path) -> Iterator[Item]:
    """Like `iter_jsonl` for a file holding one JSON list: an item per element, on the line
    where the element starts; lines with bad bytes inside an element come as UNPARSED items.

    Whitespace-only files have no elements; bad JSON ends the items with one UNPARSED item.
    """
    try:
        text, bad = read_utf8(path)
    except OSError as e:
        yield None, UNPARSED, [unreadable(e)]
        return
    pending = collections.deque(bad)
    for line, value, problems in _list_items(text):
        while pending and pending[0][0] < line:
            bad_line, message = pending.popleft()
            yield bad_line, UNPARSED, [("encoding", message)]
        if pending and pending[0][0] == line:
            problems = [("encoding", pending.popleft()[1])] + problems
        yield line, value, problems
    for bad_line, message in pending:
        yield bad_line, UNPARSED, [("encoding", message)]


def _list_items(text: str) -> Iterator[tuple[int, Any, list[Problem]]]:
    """`_list_elements` with a JSON error turned into a last UNPARSED item."""
    try:
        yield from _list_elements(text)
    except json.JSONDecodeError as e:
        yield e.lineno, UNPARSED, [_json_problem(e)]


def _list_elements(text: str) -> Iterator[tuple[int, Any, list[Problem]]]:
    """(start line, value, []) of each element of the top-level JSON list in `text`.

    Raises json.JSONDecodeError (with the line and column of the fault) for bad JSON.
    """
    idx = _WS.match(text, 0).end()
    if idx == len(text):
        return
    if not text.startswith("[", idx):
        value = json.loads(text)  # raises the decoder's own error when it is not JSON at all
        yield 1, UNPARSED, [("json", f"expected a JSON list, got {json_type(value)}")]
        return
    decoder, line, counted = json.JSONDecoder(), 1, 0
    idx = _WS.match(text, idx + 1).end()
    if text.startswith("]", idx):
        idx += 1
    else:
        while True:
            line += text.count("\n", counted, idx)
            counted = idx
            value, end = decoder.raw_decode(text, idx)
            yield line, value, []
            idx = _WS.match(text, end).end()
            if text.startswith("]", idx):
                idx += 1
                break
            if not text.startswith(",", idx):
                raise json.JSONDecodeError("expected ',' or ']' after a list element", text, idx)
            idx = _WS.match(text, idx + 1).end()
    idx = _WS.match(text, idx).end()
    if idx != len(text):
        raise json.JSONDecodeError("extra data after the list", text, idx)
