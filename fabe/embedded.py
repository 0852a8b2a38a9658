"""The embedded cleaner: a tiny model trained by the project's own code, shipped with it.

`train_embedded` is the documented, seeded recipe (`python -m fabe model train-embedded`):
build a generated dataset, train the embedded tiny base model on it, and copy the run's
`final/` into `fabe/assets/cleaner`, which cleaning and `demo` use by default. It resumes
the run when it exists, so the recipe can be spread over several sittings.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "assets" / "cleaner"


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
    ship: str = field(default=str(SHIPPED), metadata={"help": "Where the final model is copied."})


def train_embedded(cfg: EmbeddedConfig) -> Path:
    from fabe.builder import BuildConfig, build_dataset
    from fabe.rundir import RunDir
    from fabe.train import PRESETS, TrainConfig, train

    if not (Path(cfg.data) / "train.jsonl").exists():
        build_dataset(BuildConfig(out=cfg.data, n=cfg.n, seed=cfg.seed, clean_share=cfg.clean_share))
    run = RunDir(cfg.run)
    resume = run.config_path.exists()
    train_cfg = TrainConfig(**{**PRESETS["tiny-cpu"], "data": cfg.data, "out": cfg.run, "mode": cfg.mode,
                               "max_steps": cfg.max_steps, "batch_size": cfg.batch_size,
                               "learning_rate": cfg.learning_rate, "warmup_steps": 100,
                               "eval_steps": 250, "save_steps": 250, "eval_limit": 64,
                               "preset": "tiny-cpu"})
    train(train_cfg, resume=resume)
    ship = Path(cfg.ship)
    tmp = ship.with_name(ship.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run.final_path, tmp)
    shutil.rmtree(ship, ignore_errors=True)
    tmp.rename(ship)
    logger.info("embedded cleaner shipped to %s", ship)
    return ship


def default_cleaner() -> Path:
    """The shipped embedded cleaner; a clear error where it has not been trained yet."""
    if not (SHIPPED / "config.json").exists():
        raise FileNotFoundError(f"{SHIPPED}: no embedded cleaner yet; train one with "
                                "`python -m fabe model train-embedded` or pass --run/--model")
    return SHIPPED
