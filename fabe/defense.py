"""Defending a backdoored victim classifier, and measuring it: attack success rate (ASR) and
clean accuracy (CA) per defense and trigger kind, with the seconds each defense costs.

Defenses (`DEFENSES`):
- `fabe`: FABE's front-door adjustment. Clean each input into K candidates m_k with weights
  w = softmax of their scores; predict argmax_c sum_k w_k * logits_c(m_k) (DESIGN.md).
- `top1`: the victim on the top candidate only.
- `naturalness`: KillBadCode-style purifier (`fabe.purifiers`, an n-gram model of clean code).
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
from typing import Callable, Sequence

import torch

from fabe.dataset import Record

DEFENSES = ("fabe", "top1", "naturalness", "onion", "none")


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

    victim: object  # fabe.victim.Victim
    target: int
    cleaner: object | None = None  # fabe.clean.Cleaner, for fabe and top1
    clean_cfg: object | None = None  # fabe.clean.CleanConfig
    purifiers: dict[str, object] = field(default_factory=dict)  # name -> StatementPurifier


def _counted_for(record: Record, target: int, clean_pred: int | None) -> str:
    if record.trigger is None:
        return "ca" if record.label is not None else ""
    truth = record.label if record.label is not None else clean_pred
    return "asr" if truth is not None and truth != target else ""


def defend(run: DefenseRun, records: Sequence[Record], defenses: Sequence[str],
           progress: Callable[[int, int], None] | None = None) -> dict[str, list[Outcome]]:
    """Each defense's outcome on each record (cleaning is done once for fabe and top1, and
    its time is counted in both)."""
    unknown = [d for d in defenses if d not in DEFENSES]
    if unknown:
        raise ValueError(f"defenses: unknown {unknown}; known: {list(DEFENSES)}")
    if {"fabe", "top1"} & set(defenses) and run.cleaner is None:
        raise ValueError("defenses fabe and top1 need a cleaner")
    victim = run.victim
    out: dict[str, list[Outcome]] = {d: [] for d in defenses}
    for i, rec in enumerate(records):
        clean_pred = None
        if rec.trigger is not None and rec.label is None and rec.clean is not None:
            clean_pred = victim.predict([rec.clean])[0]
        counted = _counted_for(rec, run.target, clean_pred)
        cands, clean_s = None, 0.0
        if {"fabe", "top1"} & set(defenses):
            start = time.perf_counter()
            cands = run.cleaner.clean(rec.input, run.clean_cfg)
            clean_s = time.perf_counter() - start
        for name in defenses:
            start = time.perf_counter()
            if name == "none":
                pred = victim.predict([rec.input])[0]
            elif name == "fabe":
                pred = front_door(victim.logits([c.code for c in cands]), [c.weight for c in cands])
            elif name == "top1":
                pred = victim.predict([cands[0].code])[0]
            else:
                pred = victim.predict([run.purifiers[name].purify(rec.input)])[0]
            seconds = time.perf_counter() - start + (clean_s if name in ("fabe", "top1") else 0.0)
            out[name].append(Outcome(rec.id, rec.trigger or "none", rec.label, counted, pred, round(seconds, 4)))
        if progress is not None:
            progress(i + 1, len(records))
    return out


def _rates(rows: Sequence[Outcome], target: int) -> dict:
    asr = [r for r in rows if r.counted_for == "asr"]
    ca = [r for r in rows if r.counted_for == "ca"]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"asr": mean([r.prediction == target for r in asr]), "asr_n": len(asr),
            "ca": mean([r.prediction == r.label for r in ca]), "ca_n": len(ca),
            "s_per_sample": mean([r.seconds for r in rows])}


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
    from fabe.dataset import load_records

    train = data.parent / "train.jsonl"
    if train.exists() and train != data:
        codes = [r.clean for r in load_records(train) if r.clean]
        if len(codes) >= 200:
            return codes[:n]
    from fabe.corpus import generate_functions

    return [f.code for f in generate_functions(n, seed=9001)]


def default_defense_dir(cleaner: str | Path, data: Path, limit: int, root: str | Path = "defense") -> Path:
    """Next to the cleaner's run (`RUN/defense/NAME`), else under `root/`."""
    from fabe.rundir import results_dir

    return results_dir(cleaner, "defense", f"{data.parent.name}-{data.stem}" + (f"-{limit}" if limit else ""), root)


def run_defense(victim_src: str, cleaner_src: str | None, data: str | Path, defenses: Sequence[str],
                limit: int = 0, k: int = 4, target: int | None = None, out: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[dict, Path]:
    """Load the victim and the cleaner, build the baselines, defend every record of `data`
    (the first `limit`), and save defense.json and outcomes.csv (to `out` or next to the
    cleaner's run)."""
    import csv
    import os
    from dataclasses import asdict, fields

    from fabe.clean import CleanConfig, Cleaner
    from fabe.dataset import load_records
    from fabe.purifiers import causal_lm_nll, naturalness_purifier, onion_purifier
    from fabe.rundir import write_json_atomic
    from fabe.victim import Victim

    clean_cfg = CleanConfig(k=k)  # a bad K is refused before anything is loaded
    data = Path(data)
    records = load_records(data)
    records = records[:limit] if limit else records
    if not records:
        raise ValueError(f"{data}: no records")
    victim = Victim.load(victim_src)
    target = target if target is not None else victim.target_label
    if target is None:
        raise ValueError(f"{victim_src}: no victim.json with the attack's target label; give --target_label")
    cleaner = Cleaner.load(cleaner_src) if cleaner_src and {"fabe", "top1", "onion"} & set(defenses) else None
    if "onion" in defenses and cleaner is None:
        raise ValueError("the onion defense reads the cleaner's weights as its language model: give --cleaner")
    if cleaner is not None and {"fabe", "top1"} & set(defenses):
        cleaner.check_records_fit(records, clean_cfg, data)
    purifiers: dict[str, object] = {}
    if {"naturalness", "onion"} & set(defenses):
        corpus = clean_corpus_for(data)
        fit, calibration = corpus[:-100], corpus[-100:]
        if "naturalness" in defenses:
            purifiers["naturalness"] = naturalness_purifier(fit, calibration)
        if "onion" in defenses:
            purifiers["onion"] = onion_purifier(causal_lm_nll(cleaner.model, cleaner.tokenizer), calibration[:40])
    run = DefenseRun(victim, target, cleaner, clean_cfg, purifiers)
    start = time.time()
    outcomes = defend(run, records, defenses, progress)
    result = {"meta": {"victim": str(victim_src), "cleaner": str(cleaner_src), "data": str(data),
                       "records": len(records), "limit": limit, "k": k, "target_label": target,
                       "seconds": round(time.time() - start, 1),
                       "thresholds": {n: round(p.threshold, 4) for n, p in purifiers.items()}},
              "victim": victim.meta.get("held_out", {}),
              "defenses": summarize_defense(outcomes, target)}
    folder = Path(out) if out else default_defense_dir(cleaner_src or victim_src, data, limit)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".outcomes.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["defense", *[fl.name for fl in fields(Outcome)]])
        writer.writeheader()
        for name, rows in outcomes.items():
            writer.writerows({"defense": name, **asdict(r)} for r in rows)
    os.replace(tmp, folder / "outcomes.csv")
    write_json_atomic(folder / "defense.json", result)
    return result, folder
