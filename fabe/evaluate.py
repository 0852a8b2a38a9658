"""Evaluation of a cleaner's top candidate on held-out records.

Per record: whether the trigger is gone (every recorded edit's text is absent from the top
candidate; without edits, the detector finds no trigger of the record's kind), whether the
clean function is restored exactly (whitespace-normalized), CodeBLEU (the `codebleu`
package, tree-sitter C) and BLEU (sacrebleu) against the clean function, whether the top
candidate parses, how many lines it changed, where the clean function ranks among the K,
and, for unpoisoned inputs, whether the cleaner changed code it should have left alone.
Summaries are given overall and per trigger kind (CodeBLEU and BLEU at corpus level).
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from fabe.clean import Candidate, CleanConfig, Cleaner
from fabe.dataset import Record
from fabe.triggers import detect_triggers


def normalized(code: str) -> str:
    return " ".join(code.split())


def trigger_removed(record: Record, code: str) -> bool:
    """True when no trace of the record's trigger is left in `code`."""
    if record.edits:
        for edit in record.edits:
            text = edit["text"].strip()
            if edit["original"]:  # a renaming: the new identifier must be gone
                if re.search(rf"\b{re.escape(text)}\b", code):
                    return False
            elif normalized(text) in normalized(code):
                return False
        return True
    return record.trigger not in {d.kind for d in detect_triggers(code)}


def lines_changed(before: str, after: str) -> int:
    """Lines removed plus lines added from `before` to `after` (surrounding spaces ignored)."""
    a = [line.strip() for line in before.splitlines()]
    b = [line.strip() for line in after.splitlines()]
    return sum(1 for line in difflib.ndiff(a, b) if line[:1] in "+-")


def codebleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CodeBLEU for C (n-gram, weighted n-gram, syntax and dataflow match, equal weights)."""
    from codebleu import calc_codebleu

    return calc_codebleu(list(references), list(hypotheses), lang="c")["codebleu"]


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU in [0, 1] (sacrebleu, its 13a tokenizer)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100


@dataclass
class RecordResult:
    id: str
    trigger: str  # "none" for unpoisoned inputs
    top: str
    exact: bool
    removed: bool | None  # None for unpoisoned inputs
    changed: bool  # top differs from the input (whitespace-normalized)
    parses: bool
    score: float
    weight: float
    lines_changed: int  # between the input and the top candidate
    clean_rank: int | None  # rank of the first candidate equal to the clean function, if any
    codebleu: float | None  # of the top candidate against the clean function
    bleu: float | None
    reference: str | None  # the clean function


def judge(record: Record, cands: list[Candidate]) -> RecordResult:
    top = cands[0]
    poisoned = record.trigger is not None
    clean = normalized(record.clean) if record.clean is not None else None
    rank = next((c.rank for c in cands if normalized(c.code) == clean), None)
    has_ref = record.clean is not None
    return RecordResult(
        id=record.id, trigger=record.trigger or "none", top=top.code, exact=rank == top.rank,
        removed=trigger_removed(record, top.code) if poisoned else None,
        changed=normalized(top.code) != normalized(record.input), parses=top.parses,
        score=top.score, weight=top.weight, lines_changed=lines_changed(record.input, top.code),
        clean_rank=rank, codebleu=round(codebleu([record.clean], [top.code]), 4) if has_ref else None,
        bleu=round(bleu([record.clean], [top.code]), 4) if has_ref else None, reference=record.clean)


def _rates(rows: Sequence[RecordResult]) -> dict[str, float | int | None]:
    poisoned = [r for r in rows if r.removed is not None]
    clean = [r for r in rows if r.removed is None]
    scored = [r for r in rows if r.reference is not None]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    corpus = lambda fn: round(fn([r.reference for r in scored], [r.top for r in scored]), 4) if scored else None  # noqa: E731
    return {"records": len(rows), "trigger_removal": mean([r.removed for r in poisoned]),
            "exact": mean([r.exact for r in rows]), "codebleu": corpus(codebleu), "bleu": corpus(bleu),
            "parse": mean([r.parses for r in rows]), "false_change": mean([r.changed for r in clean]),
            "clean_in_k": mean([r.clean_rank is not None for r in scored]),
            "top_weight": mean([r.weight for r in rows]),
            "lines_changed": mean([r.lines_changed for r in rows])}


def summarize(rows: Sequence[RecordResult]) -> dict:
    kinds = sorted({r.trigger for r in rows})
    return {"overall": _rates(rows),
            "by_trigger": {k: _rates([r for r in rows if r.trigger == k]) for k in kinds}}


def save_eval(out: str | Path, summary: dict, rows: Sequence[dict], meta: dict[str, Any]) -> Path:
    """`out/eval.json` (meta + summary) and `out/records.csv` (one row per record), each
    written to a temporary file and renamed, so a reader never sees half of either."""
    from fabe.rundir import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".records.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(RecordResult)])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "records.csv")
    write_json_atomic(out / "eval.json", {"meta": meta, **summary})
    return out


def evaluate(cleaner: Cleaner, records: Sequence[Record], cfg: CleanConfig | None = None,
             batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
             ) -> tuple[dict, list[dict]]:
    """Clean every record; (summary, per-record rows as dicts)."""
    results = cleaner.clean_batch([r.input for r in records], cfg, batch_size, progress)
    rows = [judge(r, c) for r, c in zip(records, results)]
    return summarize(rows), [asdict(r) for r in rows]


def default_eval_dir(source: str | Path, data: str | Path, cfg: CleanConfig, limit: int,
                     root: str | Path = "evals") -> Path:
    """Next to the run (`RUN/evals/NAME`, the checkpoint's run for a checkpoint), else under
    `root/`; NAME says which split, how many records and which decoding."""
    from fabe.rundir import results_dir

    data = Path(data)
    name = f"{data.parent.name}-{data.stem}" + (f"-{limit}" if limit else "") + f"-{cfg.decoding}-k{cfg.k}"
    return results_dir(source, "evals", name, root)


def saved_evals(root: str | Path) -> list[Path]:
    """Folders holding an eval.json under `root` (runs' evals/ and others), newest first."""
    found = [p.parent for p in Path(root).glob("**/eval.json")] if Path(root).is_dir() else []
    return sorted(found, key=lambda p: (p / "eval.json").stat().st_mtime, reverse=True)


def load_eval(folder: str | Path) -> dict:
    import json

    return json.loads((Path(folder) / "eval.json").read_text())


def run_eval(source: str | Path, data: str | Path, cfg: CleanConfig | None = None, limit: int = 0,
             out: str | Path | None = None, batch_size: int = 8,
             progress: Callable[[int, int], None] | None = None) -> tuple[dict, Path]:
    """Clean the first `limit` records (0: all) of a split with the cleaner at `source`,
    then save eval.json and records.csv (to `out`, or `default_eval_dir`)."""
    import time

    from fabe.dataset import load_records

    cfg = cfg or CleanConfig()
    records = load_records(data)
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"{data}: no records to evaluate")
    start = time.time()
    cleaner = Cleaner.load(source)
    cleaner.check_records_fit(records, cfg, data)
    summary, rows = evaluate(cleaner, records, cfg, batch_size, progress)
    meta = {"source": str(source), "data": str(data), "limit": limit, "records": len(records),
            "clean": asdict(cfg), "seconds": round(time.time() - start, 1),
            "s_per_record": round((time.time() - start) / len(records), 3), "at": time.time()}
    target = Path(out) if out else default_eval_dir(source, data, cfg, limit)
    return {"meta": meta, **summary}, save_eval(target, summary, rows, meta)
