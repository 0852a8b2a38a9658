"""The `embedded` name: what it stands for wherever a model, a dataset, a split, a cleaner or
a victim is asked for, so everything works offline with nothing from outside.

- model: the tiny Llama with its BPE tokenizer (`$FABE_HOME/tiny-base`), made on first use;
- data: 5,000 generated poisoned functions, every trigger kind (`$FABE_HOME/data-generated`);
- cleaner: the cleaner shipped in `fabe/assets/cleaner` (trained by `model train-embedded`);
- victim: a small BERT backdoored on generated code (`$FABE_HOME/victim`), made on first use;
  `embedded-real` names the one shipped in `fabe/assets/victim-real`, backdoored on real C
  functions with a label computed from the code (`fabe.defense.labels`, rule `memory`).

Beside it, `examples` names the shipped real examples (`fabe/assets/examples`) as a split.

Each is seeded, so it is the same everywhere, and made once even when two processes ask at
the same time (`fabe.home.made_once`). Any other name is returned as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from fabe.home import fabe_home, made_once

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_REAL = "embedded-real"  # the shipped real-code victim
EXAMPLES = "examples"  # the shipped real examples, as a split
SHIPPED_CLEANER = Path(__file__).resolve().parent / "assets" / "cleaner"
SHIPPED_REAL_VICTIM = Path(__file__).resolve().parent / "assets" / "victim-real"
SHIPPED_EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples" / "realc.jsonl"
GENERATED_DATA = dict(n=5000, seed=0, clean_share=0.2)  # what `embedded` data is built with
KINDS = ("model", "data", "cleaner", "victim")
# The embedded victim's recipe: every trigger kind, classic and adaptive, on one tenth of the samples;
# the unpoisoned reference is trained first (adv_rename is crafted against it, as AFRAIDOOR does).
GENERATED_VICTIM: dict = dict(base=EMBEDDED, corpus="generated", triggers="every", n=6000, epochs=6.0,
                              max_length=384, reference=True)


def home_path(kind: str) -> Path:
    """Where the embedded `kind` lives."""
    return {"model": fabe_home() / "tiny-base", "data": fabe_home() / "data-generated",
            "cleaner": SHIPPED_CLEANER, "victim": fabe_home() / "victim-every"}[kind]


def _make_model(path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    from fabe.training.modeling import TinyConfig, init_tiny

    logger.info("creating the embedded tiny base model in %s", path)
    init_tiny(TinyConfig(out=str(path), overwrite=True))


def _make_data(path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    from fabe.data.builder import BuildConfig, build_dataset

    logger.info("building the embedded generated dataset in %s", path)
    build_dataset(BuildConfig(out=str(path), **GENERATED_DATA))


def _make_victim(path: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Train the embedded victim and its unpoisoned reference; `progress(step, max_steps)`
    follows the training (about a quarter of an hour on two CPU cores)."""
    from fabe.defense.victim_training import VictimConfig, train_victim

    logger.info("training the embedded victim in %s (a few minutes, once)", path)
    train_victim(VictimConfig(out=str(path), tokenizer=resolve(EMBEDDED, "model"), **GENERATED_VICTIM), progress)


MAKERS = {"model": (_make_model, "config.json"), "data": (_make_data, "dataset.json"),
          "victim": (_make_victim, "victim.json")}


def needs_making(name: str | Path, kind: str) -> bool:
    """Whether resolving `name` would first make the embedded `kind` (e.g. train the victim)."""
    return str(name) == EMBEDDED and kind in MAKERS and not (home_path(kind) / MAKERS[kind][1]).exists()


def resolve(name: str | Path, kind: str, progress: Callable[[int, int], None] | None = None) -> str:
    """`name`, or for `embedded` the path of the embedded `kind`, made on first use (the
    shipped cleaner cannot be made: its absence is an error that says how to train one);
    `progress(done, total)` follows the making where it is long (the victim's training)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown embedded kind: {kind}. Should be one of {list(KINDS)}")
    if str(name) == EMBEDDED_REAL and kind == "victim":
        if not (SHIPPED_REAL_VICTIM / "victim.json").exists():
            raise FileNotFoundError(f"{SHIPPED_REAL_VICTIM}: no shipped real-code victim; train one with "
                                    "`python -m fabe victim train` (README: Victims) or give a classifier folder")
        return str(SHIPPED_REAL_VICTIM)
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
