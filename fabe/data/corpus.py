"""Corpora of clean C functions: the `CFunction` type and the loaders of real corpora.

Loaders read Devign's `function.json`, CodeXGLUE defect-detection JSONL and folders of `.c`
files (functions found with tree-sitter). They validate everything first and raise one
`CorpusError` naming file, line and field of every problem found (up to 20); they never
return a partial corpus. They keep code exactly as given except that trailing newlines are
dropped. Files are read through `fabe.data.jsonio`, which `fabe.data.dataset` shares. The
embedded corpus is `fabe.data.generator`; `fabe.data.builder.load_corpus` picks one by name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from fabe.data import cparse, jsonio
from fabe.data.jsonio import MAX_SHOWN, UNPARSED, InputError, Problem, json_type

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CFunction:
    """One C function of a corpus."""

    code: str  # the function's source text, a complete C function definition
    name: str  # the function's name ("" if unknown)
    idx: str  # stable id inside its corpus: "gen-17", "devign-3", "dir/file.c:42"
    source: str  # where it came from: "generated", a file path, ...
    target: int | None = None  # label from the corpus (Devign/CodeXGLUE `target`), else None
    origin: dict | None = None  # the corpus's own provenance fields: project, path, license, commit_id


ORIGIN_FIELDS = ("project", "path", "license", "commit_id")  # kept from a corpus record, where present


class CorpusError(InputError):
    """A corpus that cannot be loaded; each line reads "FILE:LINE: field: what is wrong".

    `errors` keeps the first `jsonio.MAX_SHOWN` problems; `total` counts them all.
    """


# ---------------------------------------------------------------------------------------
# Loaders of real corpora
# ---------------------------------------------------------------------------------------


def _function_name(code: str) -> str:
    """The name of the (first) function defined in `code`, "" when none is found."""
    head = code.split("{", 1)[0] + "{}" if "{" in code else code
    for candidate in (head, code):
        for func in cparse.function_definitions(cparse.parse(candidate)):
            node = cparse.function_name_node(func)
            if node is not None:
                return cparse.text(node)
    return ""


def _norm(code: str) -> str:
    """The only change loaders make to code: trailing newlines are dropped."""
    return code.rstrip("\r\n")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_record(obj: Any, item: str) -> list[Problem]:
    """Problems of one Devign/CodeXGLUE object: `func` a non-empty string, `target` 0 or 1."""
    if not isinstance(obj, dict):
        return [("item", f"expected a JSON object, got {json_type(obj)}{item}")]
    found: list[Problem] = []
    func, target = obj.get("func"), obj.get("target")
    if "func" not in obj:
        found.append(("func", f"missing{item}"))
    elif not isinstance(func, str) or not func.strip():
        found.append(("func", f"expected a non-empty string, got {_show(func)}{item}"))
    if target is not None and (isinstance(target, bool) or target not in (0, 1)):
        found.append(("target", f"expected 0 or 1, got {_show(target)}{item}"))
    return found


def _check_idx(idx: Any, line: int, seen: dict[str, int]) -> list[Problem]:
    """Problems of a CodeXGLUE `idx`; a good one is recorded in `seen` (idx -> line)."""
    if isinstance(idx, bool) or not isinstance(idx, (int, str)) or idx == "":
        return [("idx", f"expected an integer or a non-empty string, got {_show(idx)}")]
    if str(idx) in seen:
        return [("idx", f"duplicate of line {seen[str(idx)]}: {_show(idx)}")]
    seen[str(idx)] = line
    return []


def _load_objects(path: Path, items: Iterator[jsonio.Item], container: str,
                  check: Callable[[int, int, Any], tuple[str, list[Problem]]]) -> list[CFunction]:
    """The CFunctions of Devign/CodeXGLUE `items`; CorpusError when any has a problem.

    `check(k, line, obj)` gives the idx and the problems of the k-th parsed object;
    `container` ("list", "file") names what holds them when there are none.
    """
    problems = jsonio.Problems(str(path), keep=MAX_SHOWN)
    out: list[CFunction] = []
    k = 0
    for line, obj, found in items:
        if obj is not UNPARSED:
            idx, more = check(k, line, obj)
            found = found + more
            if not found and not problems:  # after the first problem, only problems are kept
                code = _norm(obj["func"])
                origin = {k: obj[k] for k in ORIGIN_FIELDS if isinstance(obj.get(k), (str, int))} or None
                out.append(CFunction(code, _function_name(code), idx, str(path), obj.get("target"), origin))
            k += 1
        problems.extend(line, found)
    problems.raise_if_any(CorpusError)
    if not out:
        raise CorpusError(f"{path}: func: the {container} holds no functions")
    return out


def load_devign(path: str | Path) -> list[CFunction]:
    """Devign's function.json: a JSON list of {"func", "target", "project", "commit_id"}.

    `func` must be a non-empty string; `target`, when present, 0 or 1. idx is "devign-K"
    (K: the element's index in the list).
    """
    def check(k: int, line: int, obj: Any) -> tuple[str, list[Problem]]:
        return f"devign-{k}", _check_record(obj, f" (item {k})")

    return _load_objects(Path(path), jsonio.iter_json_list(path), "list", check)


def load_codexglue(path: str | Path) -> list[CFunction]:
    """CodeXGLUE defect-detection JSONL: one {"func", optional "target", optional "idx"} a line.

    Blank lines are skipped. idx is the record's `idx` (unique in the file) or, without one,
    the line number. The file is read line by line.
    """
    seen: dict[str, int] = {}  # idx -> line

    def check(k: int, line: int, obj: Any) -> tuple[str, list[Problem]]:
        found = _check_record(obj, "")
        if found:
            return str(line), found
        idx = obj.get("idx", line)
        return str(idx), _check_idx(idx, line, seen)

    return _load_objects(Path(path), jsonio.iter_jsonl(path), "file", check)


def load_c_folder(path: str | Path) -> list[CFunction]:
    """Every function definition in the `*.c` files under a folder (recursive, sorted).

    Code is the definition's exact source text; idx is "relative/path.c:LINE".
    """
    root = Path(path)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder: not a directory")
    files = sorted((p for p in root.rglob("*.c") if p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise CorpusError(f"{root}: folder: no .c files found")
    out: list[CFunction] = []
    problems = jsonio.Problems(str(root), keep=MAX_SHOWN)
    for file in files:
        try:
            text, bad = jsonio.read_utf8(file)
        except OSError as e:
            problems.add(None, *jsonio.unreadable(e), file=str(file))
            continue
        for line, message in bad:
            problems.add(line, "encoding", message, file=str(file))
        if problems:  # nothing will be returned: skip the parsing
            continue
        rel = file.relative_to(root).as_posix()
        for func in cparse.function_definitions(cparse.parse(text)):
            code = _norm(cparse.text(func))
            node = cparse.function_name_node(func)
            name = cparse.text(node) if node is not None else ""
            out.append(CFunction(code, name, f"{rel}:{func.start_point[0] + 1}", str(file)))
    problems.raise_if_any(CorpusError)
    if not out:
        raise CorpusError(f"{root}: folder: no function definitions in {len(files)} .c file(s)")
    logger.info("loaded %d functions from %d .c files under %s", len(out), len(files), root)
    return out
