"""The records a defense is measured on: a victim's own held-out functions (projects it never
trained on), each attack applied to the same functions, and unpoisoned ones for clean accuracy.

ASR counts only poisoned inputs whose true label is not the attacker's target, so every
poisoned record is made from such a function (on real code most functions are already in the
target class: 74% carry no memory call); using the same functions for every attack makes the
rows of the table a paired comparison. With `only_correct` those functions are also ones the
victim gets right untriggered, so no defense is charged with the victim's own errors. Records
are Tuna-format with `clean`, `edits` and `label`, built by the dataset builder
(`fabe.data.builder.make_record`), so the cleaner's own evaluation reads them too.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from fabe.data.corpus import CFunction
from fabe.data.renaming import DEFAULT_BUDGET
from fabe.data.dataset import Record


def attack_records(funcs: Sequence[CFunction], labels: Sequence[int], kinds: Sequence[str], target: int,
                   per_kind: int, clean: int, seed: int = 0, guide=None,
                   poisonable: Sequence[bool] | None = None, budget: int = DEFAULT_BUDGET) -> list[Record]:
    """Up to `per_kind` poisoned records per kind, from the first functions (in a seeded
    order) whose label is not `target` (and that are `poisonable`, when given) and to which
    the kind applies, then `clean` unpoisoned records of functions of either label. `guide`
    steers adv_rename (the victim's own), renaming at most `budget` identifiers."""
    from fabe.data.builder import BuildConfig, make_record

    rng = random.Random(seed)
    order = list(range(len(funcs)))
    rng.shuffle(order)
    labelled = [replace(f, target=y) for f, y in zip(funcs, labels)]
    others = [i for i in order if labels[i] != target and (poisonable is None or poisonable[i])]
    records: list[Record] = []
    for kind in kinds:
        cfg = BuildConfig(out="-", triggers=kind, rename_budget=budget)
        made = 0
        for i in others:
            if made == per_kind:
                break
            record = make_record(labelled[i], f"{kind}-{made}", 0, True, cfg, rng, guide)
            if record is not None and record.trigger == kind:
                records.append(record)
                made += 1
    cfg = BuildConfig(out="-", triggers=",".join(kinds))
    made = 0
    for i in order:
        if made == clean:
            break
        record = make_record(labelled[i], f"clean-{made}", made, False, cfg, rng)
        if record is not None:
            records.append(record)
            made += 1
    return records


def held_out_functions(victim: str | Path):
    """(functions, labels, config) of the functions a victim was measured on, never trained on:
    its corpus, label rule and split rebuilt from its victim.json."""
    from fabe.defense.victim_training import config_of, load_functions, split_held_out
    from fabe.defense.victims import load_victim_meta

    cfg = config_of(load_victim_meta(victim), victim)
    funcs, labels = load_functions(cfg)
    chosen = [p.strip() for p in cfg.held_out_projects.split(",") if p.strip()]
    _, test, _ = split_held_out(funcs, cfg.held_out, cfg.seed, chosen)
    return [funcs[i] for i in test], [labels[i] for i in test], cfg


def clean_reference(victim: str | Path, n: int = 300, seed: int = 0) -> list[str]:
    """Clean code for KillBadCode's language model, from the victim's training distribution but
    outside its training set: `n` functions of its corpus that it did not sample, of the
    projects it trained on (a generated corpus: other seeds). Code of other projects would be
    the wrong reference: tokens common to a training project, odd to a model of other projects,
    gather suspicion over the training set, and the threshold set on other projects' code
    flagged 74% of clean real samples. A victim without its config gets generated functions."""
    from fabe.data.builder import load_corpus
    from fabe.data.generator import generate_functions
    from fabe.defense.victim_training import config_of, project_of
    from fabe.defense.victims import load_victim_meta

    meta = load_victim_meta(victim)
    if "config" not in meta:
        return [f.code for f in generate_functions(n, seed=9001)]
    cfg = config_of(meta, victim)
    if cfg.corpus == "generated":
        used = {f.code for f in generate_functions(cfg.n or 1000, cfg.seed)}
        return [f.code for f in generate_functions(2 * n, seed=cfg.seed + 7919) if f.code not in used][:n]
    sampled = {f.idx for f in load_corpus(cfg.corpus, cfg.n or None, cfg.seed)}
    held = set(meta.get("task", {}).get("held_out_projects") or [])
    rest = [f.code for f in load_corpus(cfg.corpus) if f.idx not in sampled and project_of(f) not in held]
    if not rest:
        raise ValueError(f"{cfg.corpus}: no function outside the victim's sample for KillBadCode's reference")
    return random.Random(seed).sample(rest, min(n, len(rest)))


def victim_test_set(victim: str | Path, out: str | Path, per_kind: int = 40, clean: int = 100,
                    triggers: str = "", seed: int = 0, only_correct: bool = False) -> tuple[Path, dict[str, int]]:
    """Write to `out` the attack records of a victim's held-out functions (its corpus, label
    rule and split from its victim.json), for the kinds it was poisoned with (or `triggers`),
    adv_rename crafted with the victim's own guide and budget; returns the file and the records per kind
    ("none" for unpoisoned). `only_correct` poisons only functions the victim classifies right
    untriggered, so an ASR counts what the trigger does and not the victim's own errors toward
    the target (the convention under which published defenses reach ASRs of a few percent)."""
    from collections import Counter

    from fabe.data.dataset import write_records
    from fabe.data.triggers import parse_kinds

    from fabe.defense.victim_training import guide_of

    funcs, labels, cfg = held_out_functions(victim)
    kinds = parse_kinds(triggers) if triggers else cfg.kinds
    poisonable = None
    if only_correct:  # only non-target functions are ever poisoned: only they are classified
        from fabe.defense.victims import Victim

        others = [i for i, y in enumerate(labels) if y != cfg.target_label]
        poisonable = [False] * len(funcs)
        for i, p in zip(others, Victim.load(victim).predict([funcs[i].code for i in others])):
            poisonable[i] = p == labels[i]
    records = attack_records(funcs, labels, kinds, cfg.target_label, per_kind, clean, seed, guide_of(victim),
                             poisonable, cfg.rename_budget)
    if not records:
        raise ValueError(f"{victim}: no held-out function gave a record")
    out = Path(out)
    write_records(out, records)
    return out, dict(Counter(r.trigger or "none" for r in records))
