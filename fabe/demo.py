"""`python -m fabe demo`: the whole pipeline in a few minutes on the embedded default.

Builds a small generated dataset, trains the embedded tiny base model in full mode for a
short run (with progress), then cleans real functions of the shipped examples (projects no
shipped model trained on) and prints each poisoned input beside its top candidate, with the
verdict and the ranking table. The cleaning uses the shipped embedded cleaner when there is
one (a few minutes of CPU training do not copy code yet), else the fresh run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "Folder for the demo's data and run."})
    n: int = field(default=400, metadata={"help": "Generated functions in the demo dataset."})
    steps: int = field(default=60, metadata={"help": "Training steps of the fresh run."})
    samples: int = field(default=8, metadata={"help": "Shipped real examples to clean (one per trigger kind)."})
    seed: int = field(default=0, metadata={"help": "Seed of data and training."})
    cleaner: str = field(default="auto", metadata={
        "help": "auto (the shipped embedded cleaner, else the fresh run), fresh, or a path."})


def run_demo(cfg: DemoConfig) -> None:
    from fabe import embedded
    from fabe.cleaning.cleaner import CleanConfig, Cleaner
    from fabe.cleaning.report import candidates_table, side_by_side
    from fabe.cleaning.trust import mark_reference
    from fabe.data.builder import BuildConfig, build_dataset
    from fabe.data.dataset import load_records
    from fabe.training.config import PRESETS, TrainConfig
    from fabe.training.run import train

    out = Path(cfg.out)
    data = out / "data"
    build_dataset(BuildConfig(out=str(data), n=cfg.n, seed=cfg.seed))
    run = out / "run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    train(TrainConfig(**{**PRESETS["tiny-cpu"], "preset": "tiny-cpu", "data": str(data),
                         "out": str(run), "mode": "full", "max_steps": cfg.steps, "batch_size": 4,
                         "logging_steps": 5, "eval_steps": 0, "save_steps": cfg.steps,
                         "warmup_steps": 5, "seed": cfg.seed}))
    source = cfg.cleaner
    if source == "auto":
        source = str(embedded.SHIPPED_CLEANER) if embedded.shipped_cleaner_exists() else str(run)
    elif source == "fresh":
        source = str(run)
    records = _one_per_kind(load_records(embedded.resolve_split(embedded.EXAMPLES)), cfg.samples)
    print(f"\ncleaning {len(records)} real functions of projects the cleaner never saw, with {source}\n")
    cleaner = Cleaner.load(source)
    results = cleaner.clean_batch([r.input for r in records], CleanConfig())
    for record, cands in zip(records, results):
        origin = record.origin or {}
        print(f"=== {record.id}  {origin.get('project')}/{origin.get('path')} ({origin.get('license')})  "
              f"trigger: {record.trigger or 'none (clean input)'}")
        cleaning = cleaner.assess(record.input, mark_reference(cands, record.clean))
        print(f"verdict: {cleaning.verdict} ({cleaning.reason})")
        print(side_by_side(record.input, cands[0].code))
        print(candidates_table(cands, record.clean))
        print()


def _one_per_kind(records: list, n: int) -> list:
    """The first record of each trigger kind (and an unpoisoned one), up to `n`."""
    seen, picked = set(), []
    for r in records:
        if r.trigger not in seen:
            seen.add(r.trigger)
            picked.append(r)
    return picked[:n]
