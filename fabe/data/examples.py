"""The real examples the product ships: at most 100 real C functions of projects no shipped
model trained on, with permissive licences, each poisoned with one trigger kind (every kind
as often, and a share left unpoisoned), recorded with its project, path and licence.

They are what the Clean tab offers first and what `demo` cleans, so a newcomer sees the
cleaner on real code, and the quality floor of the tests. `python -m fabe data examples`
remakes the file from a corpus (seeded).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path

from fabe.data import triggers as trig
from fabe.data.builder import BuildConfig, load_corpus, make_record, select
from fabe.data.dataset import Record, write_records

PERMISSIVE = ("MIT", "BSD", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Apache-2.0")
MAX_EXAMPLES = 100


@dataclass
class ExamplesConfig:
    corpus: str = field(metadata={"help": "A corpus with `project`, `path` and `license` fields (.jsonl)."})
    out: str = field(metadata={"help": "The .jsonl file to write."})
    projects: str = field(default="libxml2,nginx,lua", metadata={
        "help": "Projects to take functions from: ones the shipped cleaner never trained on."})
    per_kind: int = field(default=11, metadata={"help": "Records per trigger kind (and unpoisoned ones as many)."})
    max_lines: int = field(default=25, metadata={"help": "Longest function taken, in lines."})
    seed: int = field(default=0, metadata={"help": "Seed of the choice and of the triggers."})

    def __post_init__(self) -> None:
        total = self.per_kind * (len(trig.TRIGGER_KINDS) + 1)
        if not 1 <= total <= MAX_EXAMPLES:
            raise ValueError(f"per_kind: {self.per_kind} makes {total} examples; at most {MAX_EXAMPLES} ship")


def build_examples(cfg: ExamplesConfig) -> list[Record]:
    """Records of permissively licensed functions of `cfg.projects`: `per_kind` for each
    trigger kind and `per_kind` unpoisoned, written to `cfg.out`."""
    build = BuildConfig(out="", corpus=cfg.corpus, projects=cfg.projects, max_lines=cfg.max_lines, seed=cfg.seed)
    funcs = [f for f in select(load_corpus(cfg.corpus), build) if (f.origin or {}).get("license") in PERMISSIVE]
    rng = random.Random(cfg.seed)
    rng.shuffle(funcs)
    records: list[Record] = []
    plan = [kind for kind in trig.TRIGGER_KINDS for _ in range(cfg.per_kind)] + [None] * cfg.per_kind
    pool = iter(funcs)
    for kind in plan:
        for func in pool:
            one = dataclasses.replace(build, triggers=kind or "all")
            record = make_record(func, f"example-{len(records)}", 0, kind is not None, one, rng)
            if record is not None:
                records.append(record)
                break
        else:
            raise ValueError(f"{cfg.corpus}: too few permissively licensed functions of {cfg.projects}")
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    write_records(cfg.out, records)
    return records
