"""Tuna-format datasets: the `Record` type, strict loading, atomic writing and statistics.

Every sample the project trains on or evaluates passes through here (the format is in
docs/data.md): one JSON object per line (`.jsonl`) or a JSON list (`.json`), each holding a
poisoned `input`, >= 2 candidate `output`s and one finite `score` per candidate.

Loading is all-or-nothing: `load_records` checks the whole file and raises one
`DatasetError` listing every problem as `FILE:LINE: field: what is wrong`, so a user can fix
a file in one pass and no run ever starts from a half-loaded dataset. Files are read through
`fabe.data.jsonio`, which the corpus loaders share. Writing goes through a temporary file and
`os.replace`, so a crash never leaves a truncated dataset behind.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fabe.data import jsonio
from fabe.data.jsonio import UNPARSED, json_type
from fabe.files import write_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
SUFFIXES = (".jsonl", ".json")
_EDIT_INT_FIELDS = ("start", "end")
_EDIT_STR_FIELDS = ("kind", "text", "original")
_TOKENIZE_BATCH = 1024


class DatasetError(jsonio.InputError):
    """A dataset file or folder that cannot be used; `errors` lists every problem found."""


@dataclass
class Record:
    """One Tuna-format sample."""

    id: str
    input: str  # poisoned code (or clean code for unpoisoned samples)
    output: list[str]  # candidates, >= 2
    score: list[float]  # same length as output, finite; higher = cleaner; any scale
    instruction: str | None = None
    clean: str | None = None  # reference clean code
    trigger: str | None = None  # trigger kind; None for an unpoisoned sample
    label: int | None = None
    edits: list[dict] | None = None  # [{"kind","start","end","text","original"}], offsets in input
    origin: dict | None = None  # where the clean function comes from: {"project", "path", "license", ...}

    def best(self) -> str:
        """The top-scored candidate (the first one on ties)."""
        top = max(range(len(self.score)), key=self.score.__getitem__)
        return self.output[top]

    def ranked(self) -> list[tuple[str, float]]:
        """Candidates with their scores, highest score first; ties keep file order."""
        return sorted(zip(self.output, self.score), key=lambda pair: pair[1], reverse=True)

    def to_dict(self) -> dict:
        """JSON-ready dict in the docs/data.md key order; None-valued optional fields left out."""
        d: dict[str, Any] = {"id": self.id}
        if self.instruction is not None:
            d["instruction"] = self.instruction
        d["input"] = self.input
        d["output"] = list(self.output)
        d["score"] = list(self.score)
        for key in ("clean", "trigger", "label"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.edits is not None:
            d["edits"] = [dict(edit) for edit in self.edits]
        if self.origin is not None:
            d["origin"] = dict(self.origin)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """Build a Record from a parsed JSON object; no validation (see `validate_record`).

        A missing or null `id` becomes ""; scores become floats; unknown keys are ignored.
        """
        raw_id = d.get("id")
        edits = d.get("edits")
        return cls(
            id="" if raw_id is None else str(raw_id),
            input=d["input"],
            output=list(d["output"]),
            score=[float(s) for s in d["score"]],
            instruction=d.get("instruction"),
            clean=d.get("clean"),
            trigger=d.get("trigger"),
            label=d.get("label"),
            edits=None if edits is None else [dict(e) for e in edits],
            origin=None if d.get("origin") is None else dict(d["origin"]),
        )


# ---------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_code(field: str, value: object) -> list[tuple[str, str]]:
    """A code string: a non-empty, not whitespace-only str."""
    if not isinstance(value, str):
        return [(field, f"expected a string, got {json_type(value)}")]
    if not value.strip():
        return [(field, "empty code")]
    return []


def _check_output(output: object) -> list[tuple[str, str]]:
    if not isinstance(output, list):
        return [("output", f"expected a list of strings, got {json_type(output)}")]
    errors: list[tuple[str, str]] = []
    for i, candidate in enumerate(output):
        errors += _check_code(f"output[{i}]", candidate)
    if len(output) < 2:
        noun = "candidate" if len(output) == 1 else "candidates"
        errors.append(("output", f"{len(output)} {noun}; need at least 2"))
    return errors


def _check_score(score: object) -> list[tuple[str, str]]:
    if not isinstance(score, list):
        return [("score", f"expected a list of numbers, got {json_type(score)}")]
    errors: list[tuple[str, str]] = []
    for i, value in enumerate(score):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append((f"score[{i}]", f"not a number ({value!r})"))
            continue
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            errors.append((f"score[{i}]", f"not finite ({value})"))
    return errors


def _check_edits(edits: object, code: object) -> list[tuple[str, str]]:
    """Trigger edits: objects with int start/end (char offsets in `code`) and str fields."""
    if not isinstance(edits, list):
        return [("edits", f"expected a list of objects, got {json_type(edits)}")]
    errors: list[tuple[str, str]] = []
    for i, edit in enumerate(edits):
        where = f"edits[{i}]"
        if not isinstance(edit, dict):
            errors.append((where, f"expected an object, got {json_type(edit)}"))
            continue
        for key in _EDIT_INT_FIELDS + _EDIT_STR_FIELDS:
            is_int = key in _EDIT_INT_FIELDS
            if key not in edit:
                errors.append((f"{where}.{key}", "missing"))
            elif not (_is_int(edit[key]) if is_int else isinstance(edit[key], str)):
                wanted = "an integer" if is_int else "a string"
                errors.append((f"{where}.{key}", f"expected {wanted}, got {json_type(edit[key])}"))
        start, end = edit.get("start"), edit.get("end")
        if _is_int(start) and _is_int(end) and isinstance(code, str):
            if not 0 <= start <= end <= len(code):
                errors.append((where, f"span {start}..{end} outside the input (0..{len(code)})"))
    return errors


def _check_optional(obj: dict) -> list[tuple[str, str]]:
    """Optional fields; null is accepted for each and means absent."""
    errors: list[tuple[str, str]] = []
    if obj.get("id") is not None and not (isinstance(obj["id"], str) or _is_int(obj["id"])):
        errors.append(("id", f"expected a string or integer, got {json_type(obj['id'])}"))
    for key in ("instruction", "clean", "trigger"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            errors.append((key, f"expected a string, got {json_type(value)}"))
    label = obj.get("label")
    if label is not None and not _is_int(label):
        errors.append(("label", f"expected an integer, got {json_type(label)}"))
    if obj.get("edits") is not None:
        errors += _check_edits(obj["edits"], obj.get("input"))
    origin = obj.get("origin")
    if origin is not None and not (isinstance(origin, dict) and all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in origin.values())):
        errors.append(("origin", f"expected an object of strings and integers, got {json_type(origin)}"))
    return errors


def validate_record(obj: object) -> list[tuple[str, str]]:
    """Every problem with one parsed record, as [(field, message)]; empty when it is fine."""
    if not isinstance(obj, dict):
        return [("record", f"expected a JSON object, got {json_type(obj)}")]
    errors: list[tuple[str, str]] = []
    for key in ("input", "output", "score"):
        if key not in obj:
            errors.append((key, "missing"))
    if "input" in obj:
        errors += _check_code("input", obj["input"])
    if "output" in obj:
        errors += _check_output(obj["output"])
    if "score" in obj:
        errors += _check_score(obj["score"])
    output, score = obj.get("output"), obj.get("score")
    if isinstance(output, list) and isinstance(score, list) and len(output) != len(score):
        scores = "score" if len(score) == 1 else "scores"
        candidates = "candidate" if len(output) == 1 else "candidates"
        errors.append(("score", f"{len(score)} {scores} for {len(output)} {candidates}"))
    return errors + _check_optional(obj)


# ---------------------------------------------------------------- reading


def _unsupported(name: str, path: Path) -> DatasetError:
    suffix = path.suffix or "(no suffix)"
    return DatasetError(f"{name}: unsupported format {suffix!r}; use .jsonl or .json")


def load_records(path: str | Path) -> list[Record]:
    """Read and check a whole `.jsonl` or `.json` dataset file.

    Raises one DatasetError listing every problem ("FILE:LINE: field: message", in line
    order) when any exists; never returns a partial list. Records without an id get
    "<file stem>-<line>".
    """
    name, path = str(path), Path(path)
    if path.suffix not in SUFFIXES:
        raise _unsupported(name, path)
    if not path.is_file():
        raise DatasetError(f"{name}: no such file")
    binary = jsonio.sniff_binary(path)
    if binary:
        raise DatasetError(f"{name}: {binary}; a dataset is UTF-8 JSON text")
    items = jsonio.iter_jsonl(path) if path.suffix == ".jsonl" else jsonio.iter_json_list(path)
    records: list[Record] = []
    problems = jsonio.Problems(name)
    first_line: dict[str, int] = {}
    for lineno, obj, found in items:
        if obj is not UNPARSED:
            found = found + validate_record(obj)
        raw_id = obj.get("id") if isinstance(obj, dict) else UNPARSED
        if raw_id is None or isinstance(raw_id, str) or _is_int(raw_id):
            rid = f"{path.stem}-{lineno}" if raw_id is None else str(raw_id)
            if rid in first_line:
                found.append(("id", f"duplicate id {rid!r} (first on line {first_line[rid]})"))
            else:
                first_line[rid] = lineno
            if not found and not problems:  # after the first problem, only problems are kept
                records.append(Record.from_dict({**obj, "id": rid}))
        problems.extend(lineno, found)
    if problems:
        log.info("%s: %d problem(s) found", name, problems.count)
    problems.raise_if_any(DatasetError)
    if not records:
        raise DatasetError(f"{name}: no records")
    log.info("loaded %d records from %s", len(records), name)
    return records


# ---------------------------------------------------------------- writing


def _check_for_writing(name: str, suffix: str, records: list[Record]) -> None:
    """Refuse to write what `load_records` would reject; lines are where records would go."""
    offset = 1 if suffix == ".jsonl" else 2  # a .json list opens with "[" on line 1
    problems = jsonio.Problems(name)
    seen: set[str] = set()
    for i, record in enumerate(records):
        found = validate_record(record.to_dict())
        if record.id in seen:
            found.append(("id", f"duplicate id {record.id!r}"))
        seen.add(record.id)
        problems.extend(i + offset, found)
    problems.raise_if_any(DatasetError)


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Write records as `.jsonl` (one per line) or `.json` (a list, one record per line).

    Atomic (`fabe.files.write_atomic`): on any failure the old file is untouched.
    """
    name, path = str(path), Path(path)
    if path.suffix not in SUFFIXES:
        raise _unsupported(name, path)
    records = list(records)
    _check_for_writing(name, path.suffix, records)

    def write(f) -> None:
        lines = (json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) for r in records)
        if path.suffix == ".jsonl":
            for line in lines:
                f.write(line + "\n")
        else:
            f.write("[\n" + ",\n".join(lines) + "\n]\n")

    write_atomic(path, write, newline="\n")
    log.info("wrote %d records to %s", len(records), name)


def find_split_files(folder: str | Path) -> dict[str, Path]:
    """The train/valid/test files of a dataset folder, each `.jsonl` or `.json`.

    Raises DatasetError naming the folder when it is missing, when a split has no file, or
    when a split has both a `.jsonl` and a `.json` file (which one is meant is unclear).
    """
    name, folder = str(folder), Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{name}: not a folder")
    found: dict[str, Path] = {}
    errors: list[str] = []
    for split in SPLITS:
        files = [folder / f"{split}{suffix}" for suffix in SUFFIXES]
        files = [f for f in files if f.is_file()]
        if not files:
            errors.append(f"{name}: missing {split} split ({split}.jsonl or {split}.json)")
        elif len(files) > 1:
            errors.append(f"{name}: both {split}.jsonl and {split}.json exist; keep one")
        else:
            found[split] = files[0]
    if errors:
        raise DatasetError(errors)
    return found


# ---------------------------------------------------------------- statistics


def _percentiles(values: list[int]) -> dict[str, float | int]:
    """p50/p90/p99 (numpy, linear interpolation) and max of a list of lengths."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0}
    arr = np.asarray(values)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": int(arr.max())}


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts without special tokens, tokenized in batches to bound memory."""
    lengths: list[int] = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        ids = tokenizer(texts[start:start + _TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
        lengths += [len(seq) for seq in ids]
    return lengths


def _by_count(counter: Counter) -> dict[str, int]:
    """Counter as a dict, most common first, ties by name."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def dataset_stats(records: list[Record], tokenizer: Any = None) -> dict:
    """Counts, trigger kinds, candidate/score ranges and length percentiles (JSON-ready).

    Label keys are strings ("0", "1"; "none" for records without a label) so the dict
    survives a JSON round trip unchanged. `tokens` is present only with a tokenizer.
    """
    poisoned = sum(r.trigger is not None for r in records)
    kinds = Counter("none" if r.trigger is None else r.trigger for r in records)
    stats: dict[str, Any] = {
        "records": len(records),
        "poisoned": poisoned,
        "unpoisoned": len(records) - poisoned,
        "trigger_kinds": _by_count(kinds),
    }
    if not records:
        return stats
    n_candidates = [len(r.output) for r in records]
    scores = [s for r in records for s in r.score]
    stats["candidates"] = {
        "min": min(n_candidates), "mean": float(np.mean(n_candidates)), "max": max(n_candidates),
    }
    stats["score"] = {"min": float(min(scores)), "max": float(max(scores))}
    if any(r.label is not None for r in records):
        labels = Counter("none" if r.label is None else str(r.label) for r in records)
        stats["labels"] = _by_count(labels)
    inputs = [r.input for r in records]
    candidates = [c for r in records for c in r.output]
    stats["chars"] = {
        "input": _percentiles([len(t) for t in inputs]),
        "candidate": _percentiles([len(t) for t in candidates]),
    }
    if tokenizer is not None:
        stats["tokens"] = {
            "input": _percentiles(_token_lengths(tokenizer, inputs)),
            "candidate": _percentiles(_token_lengths(tokenizer, candidates)),
        }
    return stats


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return lines


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def format_stats(stats: dict) -> str:
    """`dataset_stats` output as aligned plain-text tables for the CLI."""
    n = stats["records"]
    rows = [[key, f"{stats[key]:,}"] for key in ("records", "poisoned", "unpoisoned")]
    if "candidates" in stats:
        c = stats["candidates"]
        rows.append(["candidates", f"min {c['min']}, mean {c['mean']:.2f}, max {c['max']}"])
        rows.append(["score", f"min {stats['score']['min']:g}, max {stats['score']['max']:g}"])
    if "labels" in stats:
        rows.append(["labels", ", ".join(f"{k}: {v:,}" for k, v in stats["labels"].items())])
    width = max(len(r[0]) for r in rows)
    lines = [f"{key.ljust(width)}  {value}" for key, value in rows]
    kinds = sorted(stats["trigger_kinds"].items(), key=lambda kv: (-kv[1], kv[0]))
    if kinds:
        share = [[k, f"{v:,}", f"{100 * v / max(n, 1):.1f}%"] for k, v in kinds]
        lines += [""] + _table(["trigger", "count", "share"], share)
    length_rows = []
    for unit in ("chars", "tokens"):
        for what in ("input", "candidate"):
            if unit in stats:
                p = stats[unit][what]
                cells = [_num(p[k]) for k in ("p50", "p90", "p99", "max")]
                length_rows.append([f"{what} {unit}", *cells])
    if length_rows:
        lines += [""] + _table(["length", "p50", "p90", "p99", "max"], length_rows)
    return "\n".join(lines)
