"""The embedded cleaner: a tiny model trained by the project's own code, shipped with it.

`train_embedded` is the documented, seeded recipe (`python -m fabe model train-embedded`):
build a generated dataset, train the embedded tiny base model on it, then polish that model
on a second, disjoint generated dataset (another seed: fresh functions it cannot have
memorized, so only copying lowers the loss) at a lower learning rate, and copy the polished
`final/` into `fabe/assets/cleaner`, which cleaning and `demo` use by default. Each phase
resumes its run when it exists, so the recipe can be spread over several sittings; `--init`
polishes a given model (e.g. a checkpoint shipped from an earlier sitting, whose run was lost)
instead of training phase 1, and the shipped `fabe.json` records that lineage.

For real code (`--corpus FILE.jsonl`), the datasets leave out the `--holdout` projects (the
ones measured on), can mix in generated functions (`--mix_generated`) and rename locals to
fresh names (`--rename_share`); `--vocab_size` gives phase 1 a base whose tokenizer is learned
on the training projects and generated code, started from `--transfer_from`.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fabe.embedded import SHIPPED_CLEANER
from fabe.files import folder_atomic, write_json_atomic

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedConfig:
    run: str = field(default="runs/embedded", metadata={"help": "Run directory of the recipe."})
    data: str = field(default="runs/embedded-data", metadata={"help": "Where the dataset is built."})
    n: int = field(default=30000, metadata={"help": "Generated functions in the dataset."})
    seed: int = field(default=11, metadata={"help": "Dataset seed."})
    clean_share: float = field(default=0.2, metadata={"help": "Share of unpoisoned records."})
    mode: str = field(default="simple", metadata={"help": "Training mode.", "choices": ["simple", "full"]})
    max_steps: int = field(default=4000, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=16, metadata={"help": "Records per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    init: str = field(default="", metadata={
        "help": "Polish this model folder instead of training phase 1 (empty: train phase 1)."})
    polish_n: int = field(default=30000, metadata={"help": "Generated functions of the polishing dataset."})
    polish_seed: int = field(default=12, metadata={"help": "Seed of the polishing dataset."})
    polish_steps: int = field(default=400, metadata={"help": "Polishing steps (0: none)."})
    polish_learning_rate: float = field(default=2.5e-4, metadata={"help": "Peak polishing learning rate."})
    polish_warmup: int = field(default=30, metadata={"help": "Warmup steps of the polish (fresh AdamW state)."})
    ship: str = field(default=str(SHIPPED_CLEANER), metadata={"help": "Where the final model is copied."})
    corpus: str = field(default="generated", metadata={
        "help": "The corpus of the datasets: generated, or real C (a .jsonl with project fields)."})
    holdout: str = field(default="libxml2,nginx,lua", metadata={
        "help": "Projects of a real corpus no dataset or tokenizer may see (measured on instead)."})
    mix_generated: int = field(default=0, metadata={"help": "Generated functions mixed into each real dataset."})
    rename_share: float = field(default=0.0, metadata={
        "help": "Share of functions whose locals and parameters get fresh random names (copy, do not recall)."})
    vocab_size: int = field(default=0, metadata={
        "help": "Learn a tokenizer of this size on the corpus (training projects) and generated code for "
                "phase 1's base model (0: the embedded base model's)."})
    transfer_from: str = field(default="", metadata={
        "help": "With vocab_size: the trained model of the same shape phase 1's base starts from "
                "(vocabulary transfer)."})
    max_length: int = field(default=1024, metadata={"help": "Longest prompt+target in tokens."})


def _phase(cfg: EmbeddedConfig, data: str, n: int, seed: int, run_path: str, model: str,
           max_steps: int, learning_rate: float, warmup: int) -> Path:
    """Build `data` unless it exists, then train (or resume) one run of the recipe."""
    from fabe.data.builder import BuildConfig, build_dataset
    from fabe.rundir import RunDir
    from fabe.training.config import PRESETS, TrainConfig
    from fabe.training.run import train, train_run

    if not (Path(data) / "dataset.json").exists():
        real = cfg.corpus != "generated"
        build_dataset(BuildConfig(out=data, corpus=cfg.corpus, n=n, seed=seed, clean_share=cfg.clean_share,
                                  exclude_projects=cfg.holdout if real else "", rename_share=cfg.rename_share,
                                  mix_generated=cfg.mix_generated))  # the builder mixes into real corpora only
    run = RunDir(run_path)
    train_cfg = TrainConfig(**{**PRESETS["tiny-cpu"], "data": data, "out": run_path, "model": model,
                               "mode": cfg.mode, "max_steps": max_steps, "batch_size": cfg.batch_size,
                               "learning_rate": learning_rate, "warmup_steps": warmup,
                               "eval_steps": 250, "save_steps": 250, "eval_limit": 64, "max_length": cfg.max_length,
                               "preset": "tiny-cpu"})
    if run.config_path.exists() and not (run.final_path / "fabe.json").exists():
        train_run(run.path, resume=True)
    elif not run.config_path.exists():
        train(train_cfg)
    return run.final_path


def _base(cfg: EmbeddedConfig) -> str:
    """Phase 1's base model: the embedded one, or (vocab_size) one with a tokenizer learned on
    the corpus's training projects and generated code, made once beside the run."""
    if not cfg.vocab_size:
        return "embedded"
    from fabe.training.modeling import TinyConfig, init_tiny, shape_of

    base = Path(f"{cfg.run}-base")
    if not (base / "config.json").exists():
        init_tiny(TinyConfig(out=str(base), vocab_size=cfg.vocab_size, seed=cfg.seed, overwrite=True,
                             corpus="" if cfg.corpus == "generated" else cfg.corpus, exclude_projects=cfg.holdout,
                             transfer_from=cfg.transfer_from, **(shape_of(cfg.transfer_from) if cfg.transfer_from else {})))
    return str(base)


def train_embedded(cfg: EmbeddedConfig) -> Path:
    if cfg.init:
        final = Path(cfg.init)
        lineage = [json.loads((final / "fabe.json").read_text())] if (final / "fabe.json").exists() else []
    else:
        final = _phase(cfg, cfg.data, cfg.n, cfg.seed, cfg.run, _base(cfg), cfg.max_steps, cfg.learning_rate, 100)
        lineage = []
    if cfg.polish_steps:
        final = _phase(cfg, f"{cfg.data}-polish", cfg.polish_n, cfg.polish_seed, f"{cfg.run}-polish",
                       str(final), cfg.polish_steps, cfg.polish_learning_rate, cfg.polish_warmup)
    ship = Path(cfg.ship)
    with folder_atomic(ship, replace=True) as tmp:
        # the Trainer's pickled arguments stay behind: nothing shipped is unpickled
        shutil.copytree(final, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("training_args.bin"))
        meta = json.loads((tmp / "fabe.json").read_text())
        meta.update(recipe="python -m fabe model train-embedded " + " ".join(
            f"--{k} {shlex.quote(str(v))}" for k, v in asdict(cfg).items() if k != "ship"), recipe_config=asdict(cfg), lineage=lineage)
        meta.pop("interim", None)
        write_json_atomic(tmp / "fabe.json", meta)
    logger.info("embedded cleaner shipped to %s", ship)
    return ship
