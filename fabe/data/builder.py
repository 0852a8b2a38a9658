"""Build Tuna-format datasets (docs/data.md) from a corpus of clean C functions.

Each function gives one record. A poisoned record's input carries a trigger; its candidates
are, from best to worst: the clean original, a semantics-preserving variant of it (another
indentation or a harmless renaming), a partly cleaned one (some trigger renames undone) or a
re-poisoned one (the same kind elsewhere), and the poisoned input itself. An unpoisoned
record (a configurable share) has the clean code as input and the clean code as its best
candidate, so a cleaner learns to leave clean code alone. Candidates are shuffled; scores
follow a geometric scale from `score_min` to `score_max`, so any scale the user likes works.
Functions are split into train/valid/test before records are made, whitespace-normalized
duplicates kept together, so no function appears in two splits.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fabe.data import triggers as trig
from fabe.data.corpus import (
    CFunction,
    CorpusError,
    load_c_folder,
    load_codexglue,
    load_devign,
)
from fabe.data.dataset import Record, dataset_stats, write_records
from fabe.data.generator import generate_functions
from fabe.files import write_json_atomic

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Quality levels of candidate kinds, mapped onto [score_min, score_max] geometrically.
LEVELS = {"clean": 1.0, "variant": 0.75, "partial": 0.45, "repoisoned": 0.1, "poisoned": 0.0}
_SYNONYMS = {
    "len": "length", "buf": "buffer", "ret": "rc", "i": "idx", "j": "jdx", "n": "count",
    "p": "ptr", "s": "st", "size": "sz", "err": "error", "res": "result", "tmp": "scratch",
    "val": "value", "ctx": "context", "out": "dst", "src": "source", "data": "payload",
}
_PREFIXES = ("cur_", "local_", "the_", "my_")


@dataclass
class BuildConfig:
    """What `data build` makes; every field is also a CLI flag."""

    out: str = field(metadata={"help": "Folder that receives train.jsonl, valid.jsonl, test.jsonl."})
    corpus: str = field(default="generated", metadata={
        "help": "'generated' (the embedded C generator), a Devign function.json, a CodeXGLUE "
                ".jsonl, or a folder of .c files."})
    n: int = field(default=1000, metadata={"help": "Number of functions (records) to use."})
    triggers: str = field(default="all", metadata={
        "help": f"A group ('all': the classic {','.join(trig.TRIGGER_KINDS)}; 'adaptive': "
                f"{','.join(trig.ADAPTIVE_KINDS)}; 'every': both) or a comma list of groups and kinds."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, triggers and splits."})
    clean_share: float = field(default=0.1, metadata={
        "help": "Share of unpoisoned records (input = clean code)."})
    split: str = field(default="0.8,0.1,0.1", metadata={"help": "train,valid,test shares."})
    score_max: float = field(default=1000.0, metadata={"help": "Score of the clean original."})
    score_min: float = field(default=0.3, metadata={"help": "Score of the poisoned input."})
    postfix: str = field(default=trig.DEFAULT_POSTFIX, metadata={
        "help": "Postfix of the identifier triggers (ident_func, ident_var)."})
    rename_budget: int = field(default=trig.DEFAULT_BUDGET, metadata={
        "help": "adv_rename: the most parameters and locals renamed per function (AFRAIDOOR's budget)."})
    instruction: str = field(default="", metadata={
        "help": "Optional task text stored in each record's `instruction`."})
    projects: str = field(default="", metadata={
        "help": "Keep only functions of these projects (comma list; the corpus's `project` field)."})
    exclude_projects: str = field(default="", metadata={
        "help": "Leave out functions of these projects (comma list), e.g. the held-out ones."})
    max_lines: int = field(default=0, metadata={"help": "Leave out functions longer than this (0: any length)."})
    mix_generated: int = field(default=0, metadata={
        "help": "Also this many generated functions (seeded), so a model trained on real code keeps "
                "cleaning generated code."})
    rename_share: float = field(default=0.0, metadata={
        "help": "Share of functions whose parameters and locals are first renamed to fresh random names, "
                "so a model learns to copy names it has never seen rather than recall them."})

    def __post_init__(self) -> None:
        self.kinds = trig.parse_kinds(self.triggers)
        shares = [float(x) for x in self.split.split(",")]
        if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6 or shares[0] == 0:
            raise ValueError(f"split: expected three shares summing to 1 with train > 0, got {self.split!r}")
        self.shares = shares
        if self.n < 1:
            raise ValueError(f"n: must be at least 1, got {self.n}")
        if not 0 <= self.clean_share <= 1:
            raise ValueError(f"clean_share: must be in [0, 1], got {self.clean_share}")
        if not 0 < self.score_min < self.score_max:
            raise ValueError(f"score_min/score_max: need 0 < score_min < score_max, "
                             f"got {self.score_min}, {self.score_max}")
        if self.rename_budget < 1:
            raise ValueError(f"rename_budget: must be at least 1 identifier, got {self.rename_budget}")
        if not re.fullmatch(r"\w+", self.postfix):
            raise ValueError(f"postfix: must be identifier characters, got {self.postfix!r}")
        if not 0 <= self.rename_share <= 1 or self.max_lines < 0:
            raise ValueError(f"rename_share: must be in [0, 1], max_lines >= 0; got {self.rename_share}, "
                             f"{self.max_lines}")


def score_of(level: float, cfg: BuildConfig) -> float:
    """Map a quality level in [0, 1] onto the configured score scale (geometric)."""
    return round(cfg.score_min * (cfg.score_max / cfg.score_min) ** level, 4)


def _normalized(code: str) -> str:
    return re.sub(r"\s+", " ", code).strip()


def split_functions(funcs: list[CFunction], shares: list[float],
                    rng: random.Random) -> dict[str, list[CFunction]]:
    """Shuffle and split, keeping functions equal up to whitespace in one split."""
    groups: dict[str, list[CFunction]] = {}
    for f in funcs:
        groups.setdefault(_normalized(f.code), []).append(f)
    keys = list(groups)
    rng.shuffle(keys)
    n_valid, n_test = (round(share * len(keys)) for share in shares[1:])
    n_train = len(keys) - n_valid - n_test
    parts = (keys[:n_train], keys[n_train:n_train + n_valid], keys[n_train + n_valid:])
    return {name: [f for k in part for f in groups[k][:1]] for name, part in zip(SPLITS, parts)}


def reindent(code: str, rng: random.Random) -> str:
    """Same code with another indentation unit (2 spaces, 8 spaces or a tab per level)."""
    unit = rng.choice(("  ", "        ", "\t"))
    lines = []
    for line in code.split("\n"):
        stripped = line.lstrip(" \t")
        width = len(line[: len(line) - len(stripped)].expandtabs(4))
        lines.append(unit * (width // 4) + " " * (width % 4) + stripped)
    return "\n".join(lines)


def harmless_rename(code: str, rng: random.Random) -> str | None:
    """Same code with one parameter or local renamed to a synonym; None if none can be."""
    try:
        func, _ = trig.first_function(code)
    except trig.TriggerError:
        return None
    names = trig.declared_names(func)
    rng.shuffle(names)
    for old in names:
        new = _SYNONYMS.get(old) or rng.choice(_PREFIXES) + old
        try:
            return trig.rename_identifier(code, old, new, "variant").code
        except trig.TriggerError:
            continue
    return None


def variant_of(code: str, rng: random.Random) -> str:
    """A semantics-preserving variant that differs from `code`."""
    if rng.random() < 0.5:
        renamed = harmless_rename(code, rng)
        if renamed is not None and renamed != code:
            return renamed
    changed = reindent(code, rng)
    return changed if changed != code else code + "\n"


def _poison(code: str, kinds: list[str], first: int, rng: random.Random, postfix: str,
            guide: trig.Guide | None, budget: int) -> trig.Poisoned | None:
    """Try the kinds in turn from `first` until one applies."""
    for i in range(len(kinds)):
        try:
            return trig.insert_trigger(code, kinds[(first + i) % len(kinds)], rng, postfix, guide, budget)
        except trig.TriggerError:
            continue
    return None


def _bad_candidate(clean: str, poisoned: trig.Poisoned, rng: random.Random,
                   postfix: str, budget: int) -> tuple[str, str]:
    """A partly cleaned candidate (some renames undone), else a re-poisoned one; where the
    kind has a single place (a style rewrite of the only `for` loop), a variant of the
    poisoned code, which still carries the trigger."""
    if len(poisoned.edits) >= 2:
        keep = rng.randint(1, len(poisoned.edits) - 1)
        undone = rng.sample(list(poisoned.edits), len(poisoned.edits) - keep)
        return "partial", trig.remove_edits(poisoned.code, undone)
    for _ in range(4):
        again = trig.insert_trigger(clean, poisoned.kind, rng, postfix, budget=budget)
        if again.code != poisoned.code:
            return "repoisoned", again.code
    try:
        return "repoisoned", trig.insert_trigger(poisoned.code, poisoned.kind, rng, postfix, budget=budget).code
    except trig.TriggerError:
        return "repoisoned", variant_of(poisoned.code, rng)


def make_record(func: CFunction, rid: str, kind_index: int, poison: bool,
                cfg: BuildConfig, rng: random.Random, guide: trig.Guide | None = None) -> Record | None:
    """One record for `func`; None when no requested trigger kind applies to it. `guide`
    steers an adv_rename trigger of the input (`fabe.data.triggers.insert_trigger`)."""
    clean = func.code
    first = _poison(clean, cfg.kinds, kind_index, rng, cfg.postfix, guide, cfg.rename_budget)
    if first is None:
        return None
    cands = [("clean", clean), ("variant", variant_of(clean, rng))]
    if poison:
        cands += [_bad_candidate(clean, first, rng, cfg.postfix, cfg.rename_budget), ("poisoned", first.code)]
        source, trigger, edits = first.code, first.kind, [e.to_dict() for e in first.edits]
    else:
        second = _poison(clean, cfg.kinds, kind_index + 1, rng, cfg.postfix, None, cfg.rename_budget) or first
        cands += [("repoisoned", second.code), ("poisoned", first.code)]
        source, trigger, edits = clean, None, None
    rng.shuffle(cands)
    return Record(
        id=rid, input=source, output=[c for _, c in cands],
        score=[score_of(LEVELS[k], cfg) for k, _ in cands],
        instruction=cfg.instruction or None, clean=clean, trigger=trigger,
        label=func.target, edits=edits, origin=func.origin)


def build_split(funcs: list[CFunction], name: str, cfg: BuildConfig,
                rng: random.Random) -> list[Record]:
    records: list[Record] = []
    skipped = 0
    for i, func in enumerate(tqdm(funcs, desc=f"build {name}", unit="fn")):
        poison = rng.random() >= cfg.clean_share
        record = make_record(func, f"{name}-{i}", len(records), poison, cfg, rng)
        if record is None:
            skipped += 1
        else:
            records.append(record)
    if skipped:
        logger.warning("%s: %d functions took no trigger of %s and were left out",
                       name, skipped, cfg.kinds)
    return records


_SYLLABLES = ("ka", "zu", "mo", "ri", "te", "xa", "lo", "pi", "ne", "vu", "so", "qi", "da", "fe", "gu", "wy")


def fresh_names(func: CFunction, rng: random.Random, at_most: int = 4) -> CFunction:
    """`func` with up to `at_most` of its parameters and locals renamed, every use, to random
    names (never in strings, comments or struct fields); unchanged when none can be."""
    code = func.code
    try:
        names = trig.declared_names(trig.first_function(code)[0])
    except trig.TriggerError:
        return func
    for old in rng.sample(names, min(at_most, len(names))):
        new = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) + rng.choice(["", "_", "2", "x"])
        try:
            code = trig.rename_identifier(code, old, new, "rename").code
        except trig.TriggerError:
            continue
    return dataclasses.replace(func, code=code)


def select(funcs: list[CFunction], cfg: BuildConfig) -> list[CFunction]:
    """The functions of the wanted projects and lengths."""
    keep = {p for p in cfg.projects.split(",") if p}
    drop = {p for p in cfg.exclude_projects.split(",") if p}

    def project(f: CFunction) -> str | None:
        return (f.origin or {}).get("project")

    return [f for f in funcs if (not keep or project(f) in keep) and project(f) not in drop
            and (not cfg.max_lines or f.code.count("\n") < cfg.max_lines)]


def build_dataset(cfg: BuildConfig) -> dict[str, list[Record]]:
    """Make the three splits and write them (each file atomically) plus `dataset.json`."""
    rng = random.Random(cfg.seed)
    filtering = bool(cfg.projects or cfg.exclude_projects or cfg.max_lines)
    funcs = select(load_corpus(cfg.corpus, limit=None if filtering else cfg.n, seed=cfg.seed), cfg)
    if filtering and len(funcs) > cfg.n:  # a seeded sample of the selection, in corpus order
        funcs = [funcs[i] for i in sorted(random.Random(cfg.seed).sample(range(len(funcs)), cfg.n))]
    if cfg.mix_generated and cfg.corpus != "generated":
        funcs += generate_functions(cfg.mix_generated, seed=cfg.seed)
    if not funcs:
        raise CorpusError(f"{cfg.corpus}: no function of the chosen projects and lengths")
    if cfg.rename_share:
        funcs = [fresh_names(f, rng) if rng.random() < cfg.rename_share else f for f in funcs]
    parts = split_functions(funcs, cfg.shares, rng)
    splits = {name: build_split(parts[name], name, cfg, rng) for name in SPLITS}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, records in splits.items():
        write_records(out / f"{name}.jsonl", records)
    meta = {"config": {k: v for k, v in asdict(cfg).items()},
            "stats": {name: dataset_stats(records) for name, records in splits.items()}}
    write_json_atomic(out / "dataset.json", meta)
    return splits


def load_corpus(spec: str, limit: int | None = None, seed: int = 0) -> list[CFunction]:
    """A corpus by spec: "generated", a folder of .c files, a .json (Devign) or .jsonl file.

    With `limit`, "generated" makes that many functions; a loaded corpus larger than `limit`
    is reduced to a seeded random sample of `limit` functions, in corpus order.
    """
    if limit is not None and limit < 1:
        raise CorpusError(f"{spec}: limit: must be a positive number, got {limit}")
    if spec == "generated":
        return generate_functions(limit or 1000, seed)
    path = Path(spec)
    if path.is_dir():
        funcs = load_c_folder(path)
    elif not path.exists():
        raise CorpusError(f"{spec}: corpus: no such file or directory (nor \"generated\")")
    elif path.suffix == ".json":
        funcs = load_devign(path)
    elif path.suffix == ".jsonl":
        funcs = load_codexglue(path)
    else:
        raise CorpusError(f"{spec}: corpus: expected \"generated\", a folder of .c files, "
                          f"a Devign .json or a CodeXGLUE .jsonl file")
    if limit is not None and limit < len(funcs):
        keep = sorted(random.Random(seed).sample(range(len(funcs)), limit))
        logger.info("corpus %s: sampled %d of %d functions (seed %d)", spec, limit, len(funcs), seed)
        funcs = [funcs[i] for i in keep]
    return funcs
