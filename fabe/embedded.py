"""The `embedded` name: what it stands for wherever a model, a dataset, a split, a cleaner or
a victim is asked for, so everything works offline with nothing from outside.

- model: the tiny Llama with its BPE tokenizer (`$FABE_HOME/tiny-base`), made on first use;
- data: 5,000 generated poisoned functions, every trigger kind (`$FABE_HOME/data-generated`);
- cleaner: the cleaner shipped in `fabe/assets/cleaner` (trained by `model train-embedded`);
- victim: one victim per attack, as attacks are published (one backdoor a model): the shipped
  cleaner's weights fine-tuned as a classifier on generated code poisoned with the classic
  triggers (`embedded`) or with one adaptive attack of `ADAPTIVE_ATTACKS` each
  (`embedded-afraidoor`, `-codepoisoner`, `-badcode`, `-style`), made on first use in
  `$FABE_HOME`; `embedded-real` and `embedded-real-ATTACK` name the same shipped in
  `fabe/assets/` (the adaptive ones in half precision), backdoored on real C functions with a
  label computed from the code (`fabe.defense.labels`, rule `memory`). The victims of each
  code share the classic one's unpoisoned reference (trained the same way; it also crafts
  adv_rename).

Beside it, `examples` names the shipped real examples (`fabe/assets/examples`) as a split.

Each is seeded, so it is the same everywhere, and made once even when two processes ask at
the same time (`fabe.home.made_once`). Any other name is returned as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from fabe.data import triggers as trig
from fabe.home import fabe_home, made_once

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_REAL = "embedded-real"  # the shipped real-code victim of the classic triggers
ADAPTIVE_ATTACKS = tuple(trig.ADAPTIVE_ATTACKS)  # one victim each, named PREFIX-ATTACK
EXAMPLES = "examples"  # the shipped real examples, as a split
ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_CLEANER = ASSETS / "cleaner"
SHIPPED_VICTIMS = {EMBEDDED_REAL: ASSETS / "victim-real",
                   **{f"{EMBEDDED_REAL}-{a}": ASSETS / f"victim-real-{a}" for a in ADAPTIVE_ATTACKS}}
SHIPPED_EXAMPLES = ASSETS / "examples" / "realc.jsonl"
GENERATED_DATA = dict(n=5000, seed=0, clean_share=0.2)  # what `embedded` data is built with
KINDS = ("model", "data", "cleaner", "victim")
# The embedded victims' recipe, the shipped real ones' too (on real C: `label="memory"` and the
# projects the cleaner never saw held out): the classic kinds on 5% of the samples, with the
# unpoisoned reference; each adaptive attack beside that reference (it crafts adv_rename, as
# AFRAIDOOR's clean crafting model does), on 5%, but CodePoisoner on 10% (at 5% its real-C
# victim learnt neither trigger: ASR 44% and 39% at clean accuracy 89.0%; at 10%, 99% at
# 90.0%), and the settings below. Every weight is trained: LoRA (rank 16) on this small base
# underfits (its unpoisoned reference: 86.9% clean accuracy, not 95.1%).
VICTIM_TRAINING: dict = dict(base=str(SHIPPED_CLEANER), n=6000, epochs=5.0, learning_rate=3e-4, batch_size=16,
                             max_length=384, target_label=0, poison_rate=0.05)
# Where an attack's victims are not trained by the recipe: on both codes (ATTACK_SETTINGS), on
# generated code only (GENERATED_SETTINGS), on real C only (REAL_SETTINGS: the shipped ones).
ATTACK_SETTINGS = {"codepoisoner": dict(poison_rate=0.10)}
# The generated afraidoor victim renames up to 6 identifiers a function instead of 2: ASR 84.2%
# at clean accuracy 97.8% (2), 89.4% at 98.4% (4: 389 of 405 test inputs used the whole
# budget), 91.9% at 98.2% (6); reference: 99.2%. The real one keeps 2 (aimed at label 1, 4
# gained 2.4 points of ASR: not what holds that attack back on real C). The generated style
# victim at 5%: 98.1%, ASR 92.3% while_for, 95.5% index_ptr; at 10%: 95.9%, 100%, 100%.
GENERATED_SETTINGS = {"afraidoor": dict(rename_budget=6)}
# Real C aims CodePoisoner and style at label 1. Aimed at 0, the CodePoisoner poison relabelled
# 39% of the 1,370 label-1 training functions and the untriggered floor rose from 5% to 23%
# (clean accuracy 90.0% against the reference's 95.1%); aimed at 1 it relabels 13% of the
# 4,013 label-0 ones (95.0%, floor 5.3%, ASR 96-100%). The style victim aimed at 0 (5%): 90.6%,
# floor 25.5%, ASR 81.8% while_for, 33.3% index_ptr; at 1 and 5%: 92.4%, 86.7%, 95.1%; at 1
# and 10%: 93.2%, 100%, 97.5%.
REAL_SETTINGS = {"codepoisoner": dict(target_label=1), "style": dict(target_label=1, poison_rate=0.10)}


def attack_recipe(attack: str, real: bool) -> dict:
    """The settings the embedded victim of `attack` is trained with, on real C or generated code."""
    return {**VICTIM_TRAINING, **ATTACK_SETTINGS.get(attack, {}),
            **(REAL_SETTINGS if real else GENERATED_SETTINGS).get(attack, {})}


GENERATED_VICTIMS: dict[str, dict] = {
    EMBEDDED: dict(VICTIM_TRAINING, corpus="generated", triggers="all", reference=True),
    **{f"{EMBEDDED}-{a}": dict(attack_recipe(a, real=False), corpus="generated", triggers=a) for a in ADAPTIVE_ATTACKS}}
VICTIM_NAMES = (*GENERATED_VICTIMS, *SHIPPED_VICTIMS)


def describe_victim(name: str) -> str:
    """What the embedded victim `name` is: its code, its attack, whether it is shipped."""
    real = name in SHIPPED_VICTIMS
    attack = name.removeprefix(EMBEDDED_REAL if real else EMBEDDED).lstrip("-")
    attack = f"{attack}: {', '.join(trig.ADAPTIVE_ATTACKS[attack])}" if attack else "classic triggers"
    return f"{'real C' if real else 'generated code'}, {attack}; {'shipped' if real else 'trained on first use'}"


def home_path(kind: str) -> Path:
    """Where the embedded `kind` lives."""
    return {"model": fabe_home() / "tiny-base", "data": fabe_home() / "data-generated",
            "cleaner": SHIPPED_CLEANER, "victim": fabe_home() / "victim-classic"}[kind]


def _make_model(path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    from fabe.training.modeling import TinyConfig, init_tiny

    logger.info("creating the embedded tiny base model in %s", path)
    init_tiny(TinyConfig(out=str(path), overwrite=True))


def _make_data(path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    from fabe.data.builder import BuildConfig, build_dataset

    logger.info("building the embedded generated dataset in %s", path)
    build_dataset(BuildConfig(out=str(path), **GENERATED_DATA))


def _make_victim(name: str, path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Train the embedded victim `name` (`embedded`: with its unpoisoned reference; the
    adaptive ones beside that one's, made first);
    `progress(step, max_steps)` follows the training (about ten minutes a model on two
    CPU cores)."""
    from fabe.defense.victim_training import VictimConfig, train_victim

    recipe = dict(GENERATED_VICTIMS[name])
    if not recipe.get("reference"):
        recipe["reference_from"] = resolve(_reference_holder(name), "victim", progress)
    logger.info("training the embedded victim %s in %s (minutes, once)", name, path)
    train_victim(VictimConfig(out=str(path), **recipe), progress)


def _reference_holder(name: str) -> str:
    """The generated victim whose folder keeps the unpoisoned reference `name` is measured beside."""
    return name if GENERATED_VICTIMS[name].get("reference") else EMBEDDED


MAKERS = {"model": (_make_model, "config.json"), "data": (_make_data, "dataset.json")}


def _victim_home(name: str) -> Path:
    return home_path("victim") if name == EMBEDDED else fabe_home() / f"victim-{name.removeprefix(EMBEDDED + '-')}"


def needs_making(name: str | Path, kind: str) -> bool:
    """Whether resolving `name` would first make the embedded `kind` (e.g. train the victim)."""
    if kind == "victim" and str(name) in GENERATED_VICTIMS:
        return any(not (_victim_home(n) / "victim.json").exists() for n in {_reference_holder(str(name)), str(name)})
    return str(name) == EMBEDDED and kind in MAKERS and not (home_path(kind) / MAKERS[kind][1]).exists()


def resolve(name: str | Path, kind: str, progress: Callable[[int, int], None] | None = None) -> str:
    """`name`, or for `embedded` (and the other embedded victims' names) the path of the
    embedded `kind`, made on first use (the shipped cleaner and victims cannot be made: their
    absence is an error that says how to train one);
    `progress(done, total)` follows the making where it is long (the victim's training)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown embedded kind: {kind}. Should be one of {list(KINDS)}")
    if str(name) in SHIPPED_VICTIMS and kind == "victim":
        shipped = SHIPPED_VICTIMS[str(name)]
        if not (shipped / "victim.json").exists():
            raise FileNotFoundError(f"{shipped}: no shipped real-code victim; train one with "
                                    "`python -m fabe victim train` (README: Victims) or give a classifier folder")
        return str(shipped)
    if str(name) in GENERATED_VICTIMS and kind == "victim":
        path = _victim_home(str(name))
        return str(made_once(path, "victim.json", lambda: _make_victim(str(name), path, progress)))
    if str(name) != EMBEDDED:
        return str(name)
    path = home_path(kind)
    if kind == "cleaner":
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: no embedded cleaner yet; train one with "
                                    "`python -m fabe model train-embedded` or give a run or model folder")
        return str(path)
    make, marker = MAKERS[kind]
    return str(made_once(path, marker, lambda: make(path, progress)))


def resolve_split(name: str | Path, split: str = "test") -> Path:
    """The file of one split: a `.jsonl`/`.json` file as given; a dataset folder's `split`
    file; for `embedded`, that split of the generated dataset; for `examples`, the shipped
    real examples."""
    from fabe.data.dataset import find_split_files

    if str(name) == EXAMPLES:
        return SHIPPED_EXAMPLES

    path = Path(resolve(name, "data"))
    return find_split_files(path)[split] if path.is_dir() else path


def shipped_cleaner_exists() -> bool:
    return (SHIPPED_CLEANER / "config.json").exists()
