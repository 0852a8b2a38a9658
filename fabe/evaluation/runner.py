"""Evaluating cleaners: clean every record of a split, judge the top candidates
(`fabe.evaluation.metrics`), and save the result as `eval.json` (meta + summary),
`records.csv` (one row per record), `candidates.jsonl` (every record's K candidates, so a
record opened from the page shows what the evaluation saw) and `summary.csv` (every rate with
its count and 95% interval, as numbers) next to the cleaner's run, where the page finds them."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Sequence

from fabe.cleaning.cleaner import Candidate, CleanConfig, Cleaner
from fabe.data.dataset import Record
from fabe.evaluation.metrics import RecordResult, judge, summarize
from fabe.files import write_atomic, write_json_atomic


CANDIDATES = "candidates.jsonl"


def save_eval(out: str | Path, summary: dict, rows: Sequence[dict], meta: dict[str, Any],
              candidates: Sequence[Sequence[Candidate]] | None = None) -> Path:
    """`out/eval.json` (meta + summary), `out/records.csv` (one row per record),
    `out/candidates.jsonl` (each row's candidates, when given) and `out/summary.csv` (the
    rates as numbers), each written to a temporary file and renamed, so a reader never sees
    half of one; eval.json last, as the page lists folders by it."""
    from fabe.evaluation.report import write_summary_csv

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(RecordResult)])
        writer.writeheader()
        writer.writerows(rows)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "records.csv", write, newline="")
    if candidates is not None:
        write_atomic(out / CANDIDATES, lambda f: f.writelines(
            json.dumps({"id": row["id"], "candidates": [c.to_dict() for c in cands]}) + "\n"
            for row, cands in zip(rows, candidates)))
    write_summary_csv(out, summary)
    write_json_atomic(out / "eval.json", {"meta": meta, **summary})
    return out


def evaluate(cleaner: Cleaner, records: Sequence[Record], cfg: CleanConfig | None = None,
             batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
             ) -> tuple[dict, list[dict], list[list[Candidate]]]:
    """Clean every record; (summary, per-record rows as dicts, each record's candidates)."""
    if progress is not None:
        progress(0, len(records))  # the count is shown before the first batch is done
    results = cleaner.clean_batch([r.input for r in records], cfg, batch_size, progress)
    rows = [judge(r, c) for r, c in zip(records, results)]
    return summarize(rows), [asdict(r) for r in rows], results


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
    return json.loads((Path(folder) / "eval.json").read_text())


def load_candidates(folder: str | Path, record_id: str) -> list[Candidate] | None:
    """The candidates an evaluation saved for one record; None when it saved none (an
    evaluation older than candidates.jsonl, or a record it did not clean)."""
    path = Path(folder) / CANDIDATES
    if not path.is_file():
        return None
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            if row["id"] == record_id:
                return [Candidate(**c) for c in row["candidates"]]
    return None


def run_eval(source: str | Path, data: str | Path, cfg: CleanConfig | None = None, limit: int = 0,
             out: str | Path | None = None, batch_size: int = 8,
             progress: Callable[[int, int], None] | None = None) -> tuple[dict, Path]:
    """Clean the first `limit` records (0: all) of a split with the cleaner at `source`,
    score how it ranks their own candidates, then save eval.json and records.csv (to `out`,
    or `default_eval_dir`)."""
    import time

    from fabe.data.dataset import load_records

    cfg = cfg or CleanConfig()
    records = load_records(data)
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"{data}: no records to evaluate")
    start = time.time()
    cleaner = Cleaner.load(source)
    cleaner.check_records_fit(records, cfg, data)
    summary, rows, candidates = evaluate(cleaner, records, cfg, batch_size, progress)
    summary["ranking"] = ranking_of(cleaner, records)
    meta = {"source": str(source), "data": str(data), "limit": limit, "records": len(records),
            "clean": asdict(cfg), "seconds": round(time.time() - start, 1),
            "s_per_record": round((time.time() - start) / len(records), 3), "at": time.time()}
    target = Path(out) if out else default_eval_dir(source, data, cfg, limit)
    return {"meta": meta, **summary}, save_eval(target, summary, rows, meta, candidates)


def ranking_of(cleaner: Cleaner, records: Sequence[Record]) -> dict:
    """How the cleaner ranks the records' own scored candidates (`fabe.evaluation.ranking`)."""
    from fabe.evaluation.ranking import candidate_scores, ranking_quality

    ranked = [r for r in records if len(set(r.score)) > 1]
    return ranking_quality(ranked, candidate_scores(cleaner, ranked)) if ranked else ranking_quality([], [])


def calibrate(source: str | Path, data: str | Path, cfg: CleanConfig | None = None, limit: int = 0,
              batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> dict:
    """Fit the candidates' weight temperature on a validation split (records with a clean
    reference) so that the top confidence predicts whether the top candidate is exact, report
    the calibration, and store both in the model's fabe.json, where a loaded Cleaner finds them."""
    from fabe.cleaning import calibration
    from fabe.cleaning.loading import model_folder
    from fabe.cleaning.trust import normalized
    from fabe.data.dataset import load_records

    cfg = cfg or CleanConfig()
    records = [r for r in load_records(data) if r.clean is not None]
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"{data}: no records with a clean reference to calibrate on")
    cleaner = Cleaner.load(source)
    cleaner.check_records_fit(records, cfg, data)
    results = cleaner.clean_batch([r.input for r in records], cfg, batch_size, progress)
    scores = [[c.score for c in cands] for cands in results]
    tops = [normalized(max(cands, key=lambda c: c.score).code) for cands in results]
    same = [[normalized(c.code) == top for c in cands] for top, cands in zip(tops, results)]
    right = [top == normalized(r.clean) for top, r in zip(tops, records)]
    temperature = calibration.fit_temperature(scores, same, right)
    found = {**calibration.report(scores, same, right, temperature), "data": str(data), "k": cfg.k,
             "decoding": cfg.decoding}
    folder = model_folder(source)
    meta_path = folder / "fabe.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    write_json_atomic(meta_path, {**meta, "calibration": found})
    return found
