"""Defending a backdoored victim classifier, and measuring it: attack success rate (ASR) and
clean accuracy (CA) per defense and trigger kind, with the seconds each defense costs.

Defenses (`DEFENSES`):
- `fabe`: FABE's front-door adjustment. Clean each input into K candidates m_k with weights
  w = softmax of their scores; predict argmax_c sum_k w_k * logits_c(m_k) (docs/method.md).
- `top1`: the victim on the top candidate only.
- `naturalness`: KillBadCode-style purifier (`fabe.defense.purifiers`, an n-gram model of clean code).
- `onion`: ONION-style purifier with a causal LM (by default the cleaner's weights read as a
  plain language model of code).
- `none`: the victim on the input as it is.

ASR counts poisoned inputs whose true label is not the attacker's target (unlabelled
records: whose clean version the victim does not already put in the target class) and is
the share the victim puts in the target class. CA is the accuracy on unpoisoned inputs that
carry a label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fabe import embedded
from fabe.data.dataset import Record
from fabe.files import write_atomic, write_json_atomic
from fabe.registry import Registry


def front_door(logits: torch.Tensor, weights: Sequence[float]) -> int:
    """argmax over classes of sum_k w_k * logits[k]; `logits` is (K, classes)."""
    w = torch.as_tensor(list(weights), dtype=logits.dtype)
    return int((w[:, None] * logits).sum(0).argmax())


@dataclass
class Outcome:
    """One record under one defense."""

    id: str
    trigger: str  # "none" for unpoisoned inputs
    label: int | None
    counted_for: str  # "asr", "ca" or "" (neither)
    prediction: int
    seconds: float


@dataclass
class DefenseRun:
    """What `defend` needs besides the records: the victim, and per defense its parts."""

    victim: object  # fabe.defense.victims.Victim
    target: int
    cleaner: object | None = None  # fabe.cleaning.cleaner.Cleaner, for fabe and top1
    clean_cfg: object | None = None  # fabe.cleaning.cleaner.CleanConfig
    purifiers: dict[str, object] = field(default_factory=dict)  # name -> StatementPurifier


def _counted_for(record: Record, target: int, clean_pred: int | None) -> str:
    if record.trigger is None:
        return "ca" if record.label is not None else ""
    truth = record.label if record.label is not None else clean_pred
    return "asr" if truth is not None and truth != target else ""


def _purified(run: DefenseRun, name: str, record: Record) -> int:
    return run.victim.predict([run.purifiers[name].purify(record.input)])[0]


def _naturalness(fit: list[str], calibration: list[str], cleaner: Any) -> Any:
    from fabe.defense.purifiers import naturalness_purifier

    return naturalness_purifier(fit, calibration)


def _onion(fit: list[str], calibration: list[str], cleaner: Any) -> Any:
    from fabe.defense.purifiers import causal_lm_nll, onion_purifier

    return onion_purifier(causal_lm_nll(cleaner.model, cleaner.tokenizer), calibration[:40])


@dataclass(frozen=True)
class Defense:
    """How a defense predicts a record's class: `predict(run, record, candidates)`, where
    `candidates` are the cleaner's K for the record when `cleans` (else None); `purifier`
    builds its purifier from clean code (fit, calibration) and the cleaner."""

    predict: Callable[[DefenseRun, Record, list | None], int]
    cleans: bool = False
    needs_cleaner: bool = False
    purifier: Callable[[list[str], list[str], Any], Any] | None = None


DEFENSES: Registry[Defense] = Registry("defense", {
    "fabe": Defense(lambda run, rec, cands: front_door(run.victim.logits([c.code for c in cands]),
                                                       [c.weight for c in cands]), cleans=True, needs_cleaner=True),
    "top1": Defense(lambda run, rec, cands: run.victim.predict([cands[0].code])[0], cleans=True, needs_cleaner=True),
    "naturalness": Defense(lambda run, rec, cands: _purified(run, "naturalness", rec), purifier=_naturalness),
    "onion": Defense(lambda run, rec, cands: _purified(run, "onion", rec), needs_cleaner=True, purifier=_onion),
    "none": Defense(lambda run, rec, cands: run.victim.predict([rec.input])[0]),
})


def defend(run: DefenseRun, records: Sequence[Record], defenses: Sequence[str],
           progress: Callable[[int, int], None] | None = None) -> dict[str, list[Outcome]]:
    """Each defense's outcome on each record (cleaning is done once for the defenses that
    clean, and its time is counted in each of them)."""
    chosen = {name: DEFENSES[name] for name in defenses}
    needing = [name for name, d in chosen.items() if d.needs_cleaner]
    if needing and run.cleaner is None:
        raise ValueError(f"defenses {', '.join(needing)} need a cleaner")
    cleans = any(d.cleans for d in chosen.values())
    out: dict[str, list[Outcome]] = {d: [] for d in defenses}
    if progress is not None:
        progress(0, len(records))  # the count is shown before the first record is done
    for i, rec in enumerate(records):
        clean_pred = None
        if rec.trigger is not None and rec.label is None and rec.clean is not None:
            clean_pred = run.victim.predict([rec.clean])[0]
        counted = _counted_for(rec, run.target, clean_pred)
        cands, clean_s = None, 0.0
        if cleans:
            start = time.perf_counter()
            cands = run.cleaner.clean(rec.input, run.clean_cfg)
            clean_s = time.perf_counter() - start
        for name, defense in chosen.items():
            start = time.perf_counter()
            pred = defense.predict(run, rec, cands if defense.cleans else None)
            seconds = time.perf_counter() - start + (clean_s if defense.cleans else 0.0)
            out[name].append(Outcome(rec.id, rec.trigger or "none", rec.label, counted, pred, round(seconds, 4)))
        if progress is not None:
            progress(i + 1, len(records))
    return out


def _rates(rows: Sequence[Outcome], target: int) -> dict:
    """ASR and CA, each with the count it is over (`asr_n`) and its 95% Wilson interval
    (`asr_ci`), and the mean seconds per sample."""
    from fabe.evaluation.metrics import rate

    asr = [r for r in rows if r.counted_for == "asr"]
    ca = [r for r in rows if r.counted_for == "ca"]
    seconds = [r.seconds for r in rows]
    return {**rate([r.prediction == target for r in asr], "asr"), **rate([r.prediction == r.label for r in ca], "ca"),
            "s_per_sample": round(sum(seconds) / len(seconds), 4) if seconds else None}


def summarize_defense(outcomes: dict[str, list[Outcome]], target: int) -> dict:
    """Per defense: overall ASR, CA, seconds per sample, and ASR per trigger kind."""
    result = {}
    for name, rows in outcomes.items():
        kinds = sorted({r.trigger for r in rows} - {"none"})
        result[name] = {"overall": _rates(rows, target),
                        "by_trigger": {k: _rates([r for r in rows if r.trigger == k], target) for k in kinds}}
    return result


def clean_corpus_for(data: Path, n: int = 2000) -> list[str]:
    """Clean code for the purifiers' language models, kept apart from what is measured: the
    `clean` fields of the training split beside `data` when it has one, else generated
    functions (a seed no dataset builder uses by default)."""
    from fabe.data.dataset import load_records

    train = data.parent / "train.jsonl"
    if train.exists() and train != data:
        codes = [r.clean for r in load_records(train) if r.clean]
        if len(codes) >= 200:
            return codes[:n]
    from fabe.data.generator import generate_functions

    return [f.code for f in generate_functions(n, seed=9001)]


def default_defense_dir(cleaner: str | Path, data: Path, limit: int, root: str | Path = "defense") -> Path:
    """Next to the cleaner's run (`RUN/defense/NAME`), else under `root/`."""
    from fabe.rundir import results_dir

    return results_dir(cleaner, "defense", f"{data.parent.name}-{data.stem}" + (f"-{limit}" if limit else ""), root)


def _purifiers(names: Sequence[str], data: Path, cleaner: Any) -> dict[str, Any]:
    """The purifiers of the chosen defenses, fit and calibrated on clean code kept apart
    from `data`."""
    makers = {name: DEFENSES[name].purifier for name in names if DEFENSES[name].purifier is not None}
    if not makers:
        return {}
    corpus = clean_corpus_for(data)
    fit, calibration = corpus[:-100], corpus[-100:]
    return {name: make(fit, calibration, cleaner) for name, make in makers.items()}


def save_defense(folder: Path, result: dict, outcomes: dict[str, list[Outcome]]) -> Path:
    """`folder/defense.json`, `folder/outcomes.csv` (one row per defense and record) and
    `folder/summary.csv` (every rate with its count and 95% interval), each written
    atomically; defense.json last, as the page lists folders by it."""
    import csv
    from dataclasses import asdict, fields

    from fabe.evaluation.report import write_summary_csv

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=["defense", *[fl.name for fl in fields(Outcome)]])
        writer.writeheader()
        for name, rows in outcomes.items():
            writer.writerows({"defense": name, **asdict(r)} for r in rows)

    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "outcomes.csv", write, newline="")
    write_summary_csv(folder, result)
    write_json_atomic(folder / "defense.json", result)
    return folder


def labelled_by_rule(records: Sequence[Record], rule: str | None) -> tuple[list[Record], int]:
    """`records`, those without a label given the one the victim's label rule computes from
    their clean code (`fabe.defense.labels`; a trigger does not change it), and how many got one."""
    from dataclasses import replace

    from fabe.defense.labels import LABEL_RULES

    compute = LABEL_RULES.get(rule or "corpus")
    if compute is None:
        return list(records), 0
    out = [r if r.label is not None else replace(r, label=compute(r.clean or r.input)) for r in records]
    return out, sum(r.label is None for r in records)


def run_defense(victim_src: str, cleaner_src: str | None, data: str | Path, defenses: Sequence[str],
                limit: int = 0, k: int = 4, target: int | None = None, out: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None,
                victim_progress: Callable[[int, int], None] | None = None) -> tuple[dict, Path]:
    """Load the victim and the cleaner ('embedded' names the embedded ones), build the
    baselines, defend every record of `data` (the first `limit`), and save defense.json and
    outcomes.csv (to `out` or next to the cleaner's run). `progress(done, total)` follows the
    records, `victim_progress(step, max_steps)` the embedded victim's training on first use."""
    from fabe.cleaning.cleaner import CleanConfig, Cleaner
    from fabe.data.dataset import load_records
    from fabe.defense.victims import Victim

    chosen = {name: DEFENSES[name] for name in defenses}  # an unknown name is refused first
    clean_cfg = CleanConfig(k=k)  # so is a bad K, before anything is loaded
    data = Path(data)
    records = load_records(data)
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"{data}: no records")
    victim = Victim.load(embedded.resolve(victim_src, "victim", victim_progress))
    rule = (victim.meta.get("task") or {}).get("label")
    records, computed = labelled_by_rule(records, rule)
    target = target if target is not None else victim.target_label
    if target is None:
        raise ValueError(f"{victim_src}: no victim.json with the attack's target label; give --target_label")
    needing = [name for name, d in chosen.items() if d.needs_cleaner]
    if needing and not cleaner_src:
        raise ValueError(f"defenses {', '.join(needing)} need a cleaner (onion reads its weights as its language "
                         "model): give --cleaner")
    cleaner = Cleaner.load(embedded.resolve(cleaner_src, "cleaner")) if needing else None
    if any(d.cleans for d in chosen.values()):
        cleaner.check_records_fit(records, clean_cfg, data)
    run = DefenseRun(victim, target, cleaner, clean_cfg, _purifiers(defenses, data, cleaner))
    start = time.time()
    outcomes = defend(run, records, defenses, progress)
    result = {"meta": {"victim": str(victim_src), "cleaner": str(cleaner_src), "data": str(data),
                       "records": len(records), "limit": limit, "k": k, "target_label": target,
                       "labels_computed": {"rule": rule, "records": computed} if computed else None,
                       "temperature": cleaner.temperature if cleaner is not None else None,
                       "seconds": round(time.time() - start, 1),
                       "thresholds": {n: round(p.threshold, 4) for n, p in run.purifiers.items()}},
              "victim": victim.meta.get("held_out", {}),
              "defenses": summarize_defense(outcomes, target)}
    folder = Path(out) if out else default_defense_dir(cleaner_src or victim_src, data, limit)
    return result, save_defense(folder, result, outcomes)


def saved_defenses(root: str | Path) -> list[Path]:
    """Folders holding a defense.json under `root`, newest first."""
    root = Path(root)
    found = [p.parent for p in root.glob("**/defense.json")] if root.is_dir() else []
    return sorted(found, key=lambda p: (p / "defense.json").stat().st_mtime, reverse=True)


def load_defense(folder: str | Path) -> dict:
    """A saved defense result: meta, the victim's own held-out measure and each defense's rates."""
    import json

    return json.loads((Path(folder) / "defense.json").read_text())
