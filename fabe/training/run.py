"""A training run: validate, write the run folder's resolved config, train from it.

`create_run` writes `config.json` once, before anything starts: `train` (every option of the
resolved TrainConfig), `provenance` (package versions, git commit, dataset hashes) and, for a
run the manager launches, `launch` (GPUs and the exact command). `train_run` trains a run
folder from that file alone, which is what a launched process does (`python -m fabe train
--run RUN`) and what a resume reads again; changes made at a resume (e.g. more steps) are
written into the same file and listed under `resumes`. The run directory (`fabe.rundir`)
gets status, metrics, log, checkpoints and `final/`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fabe import embedded
from fabe.data.dataset import Record, find_split_files, load_records
from fabe.files import write_json_atomic
from fabe.rundir import RunDir, failure_hint, now, provenance
from fabe.training.config import TrainConfig, check_keys, config_from_dict

logger = logging.getLogger(__name__)

NOISY_LOGGERS = ("transformers.configuration_utils", "transformers.generation.configuration_utils",
                 "transformers.modeling_utils", "transformers.tokenization_utils_base")


def data_files(data: str) -> tuple[Path, Path | None]:
    """(train file, valid file or None) of a dataset folder or a single file ('embedded':
    the generated dataset, built on first use)."""
    if not data:
        raise ValueError("data: give a dataset folder or file (--data)")
    path = Path(embedded.resolve(data, "data"))
    if path.is_dir():
        files = find_split_files(path)
        return files["train"], files["valid"]
    if not path.exists():
        raise ValueError(f"data: {data}: no such file or folder")
    return path, None


def load_data(cfg: TrainConfig) -> tuple[list[Record], list[Record] | None, list[Path]]:
    """Validate and load the train (and valid) records; raises before anything is created."""
    train_file, valid_file = data_files(cfg.data)
    train = load_records(train_file)
    valid = load_records(valid_file) if valid_file is not None else None
    if valid is not None and cfg.eval_limit:
        valid = valid[:cfg.eval_limit]
    return train, valid, [f for f in (train_file, valid_file) if f is not None]


def preflight(cfg: TrainConfig, train: list[Record], train_file: Path) -> None:
    """Refuse, before the run directory exists, a model that is not one (its tokenizer is
    loaded: quick, and what a bad folder fails on first) and a dataset of which no record
    fits max_length, so bad input leaves no failed run behind."""
    from fabe.training.encoding import min_tokens, prompt_ids
    from fabe.training.modeling import load_tokenizer

    tokenizer = load_tokenizer(embedded.resolve(cfg.model, "model"), cfg.trust_remote_code)

    def fits(code: str) -> bool:  # the cheap bound first: a 5 MB input is never tokenized
        return min_tokens(tokenizer, code) < cfg.max_length and len(prompt_ids(tokenizer, code)) < cfg.max_length

    if not any(fits(r.input) for r in train):
        raise ValueError(f"data: {train_file}: no record fits max_length {cfg.max_length}: each input with the "
                         "prompt is longer; raise max_length (within the model's window) or shorten the inputs")


def default_run_dir(mode: str, root: str = "runs") -> Path:
    import time

    return Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}"


def _new_run(path: str | Path) -> RunDir:
    run = RunDir(path)
    if run.config_path.exists():
        raise FileExistsError(f"{run.path}: a run exists there; resume it (--run {run.path} --resume) "
                              "or choose another --out")
    return run


def create_run(cfg: TrainConfig, launch: dict[str, Any] | None = None) -> RunDir:
    """The run folder `cfg.out` with its config.json (the resolved config, provenance and
    the launch); refused when a run is there already."""
    run = _new_run(cfg.out)
    run.path.mkdir(parents=True, exist_ok=True)
    files = [f for f in data_files(cfg.data) if f is not None]
    config: dict[str, Any] = {"train": cfg.to_dict(), "provenance": provenance(files)}
    if launch is not None:
        config["launch"] = launch
    write_json_atomic(run.config_path, config)
    return run


def run_config(run: RunDir) -> TrainConfig:
    """The TrainConfig a run folder trains with: its config.json's `train`, as written."""
    if not run.config_path.exists():
        raise ValueError(f"{run.path}: not a run folder (no config.json)")
    return config_from_dict(run.read_config()["train"], str(run.config_path))


def change_run_config(run: RunDir, changes: dict[str, Any]) -> TrainConfig:
    """Apply `changes` (e.g. more max_steps for a resume) to the run's config.json, recording
    them under `resumes`; the base model cannot change (the checkpoints are of that model)."""
    check_keys(changes, "changes")
    config = run.read_config()
    before = config["train"]
    if "model" in changes and changes["model"] != before["model"]:
        raise ValueError(f"model: the run in {run.path} was trained from {before['model']!r}; a resume cannot "
                         f"continue its checkpoints on {changes['model']!r}")
    cfg = config_from_dict({**before, **changes, "out": before["out"]}, str(run.config_path))
    changed = {k: v for k, v in cfg.to_dict().items() if v != before[k]}
    if changed:
        config["train"] = cfg.to_dict()
        config.setdefault("resumes", []).append({"at": now(), "changes": changed})
        write_json_atomic(run.config_path, config)
    return cfg


def train(cfg: TrainConfig) -> Path:
    """Validate `cfg` and its data, create the run folder (`cfg.out`, default
    runs/<time>-<mode>) and train it; a bad dataset or model raises before the folder
    exists. Returns the run folder."""
    import dataclasses

    cfg = dataclasses.replace(cfg, out=cfg.out or str(default_run_dir(cfg.mode)))
    train_records, valid, files = load_data(cfg)
    _new_run(cfg.out)
    preflight(cfg, train_records, files[0])
    run = create_run(cfg) if _is_main_process() else RunDir(cfg.out)
    _train_logged(run, cfg, train_records, valid, resume=False)
    return run.path


def train_run(run_path: str | Path, resume: bool = False, changes: dict[str, Any] | None = None) -> Path:
    """Train the run folder from its config.json: a launched run, or (`resume`) a stopped or
    failed one from its last complete checkpoint, with `changes` applied first."""
    run = RunDir(run_path)
    cfg = run_config(run)
    if changes:
        if not resume:
            raise ValueError(f"{run.path}: a launched run trains from its config.json as written; "
                             f"change {sorted(changes)} at a resume, or launch a new run")
        cfg = change_run_config(run, changes) if _is_main_process() else run_config(run)
    if not resume and run.checkpoints(complete=False):
        raise FileExistsError(f"{run.path}: has checkpoints already; resume it with --resume")
    train_records, valid, _ = load_data(cfg)
    _train_logged(run, cfg, train_records, valid, resume)
    return run.path


def _stderr_is(path: Path) -> bool:
    """True when this process's stderr already goes to `path` (the run manager's launch)."""
    try:
        err, target = os.fstat(2), os.stat(path)
    except OSError:
        return False
    return (err.st_dev, err.st_ino) == (target.st_dev, target.st_ino)


def _attach_log(run_path: Path) -> logging.Handler | None:
    """Copy the library's and transformers' log records into train.log, unless stderr is
    already that file (then they reach it once, through stderr)."""
    import transformers

    transformers.utils.logging.set_verbosity_info()
    if logging.getLogger("fabe").getEffectiveLevel() > logging.INFO:
        logging.getLogger("fabe").setLevel(logging.INFO)  # the progress lines
    for noisy in NOISY_LOGGERS:  # config and weight-loading dumps would bury the progress lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers prints through its own handler; with CI set it also propagates to the
    # root logger, which would print every line twice.
    logging.getLogger("transformers").propagate = False
    if _stderr_is(run_path / "train.log"):
        return None
    handler = logging.FileHandler(run_path / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("fabe", "transformers"):
        logging.getLogger(name).addHandler(handler)
    return handler


def _is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def _start_fields(resume: bool) -> dict[str, Any]:
    """Status fields of a starting run (a resumed one keeps its first start time). Under the
    run manager the starter has recorded its pid (the torchrun agent's, for several GPUs),
    which must stay the run's pid."""
    fields: dict[str, Any] = {"resumed_at" if resume else "started_at": now(), "ended_at": None,
                              "exit_code": None, "error": None}
    if not os.environ.get("FABE_MANAGED"):
        import psutil

        fields.update(pid=os.getpid(), pid_created=psutil.Process().create_time())
    return fields


def _train_logged(run: RunDir, cfg: TrainConfig, train_records: list[Record], valid: list[Record] | None,
                  resume: bool) -> None:
    """Train with the run's status and log kept: running, then finished, stopped or failed
    (with the error and a hint)."""
    if not _is_main_process():
        _train(run, cfg, train_records, valid)
        return
    handler = _attach_log(run.path)
    try:
        run.set_status("running", **_start_fields(resume and "started_at" in run.read_status()))
        _train(run, cfg, train_records, valid)
    except BaseException as e:
        state = "stopped" if isinstance(e, KeyboardInterrupt) else "failed"
        error = f"{type(e).__name__}: {e}"[:2000]
        run.set_status(state, ended_at=now(), exit_code=1, error=error, hint=failure_hint(error))
        raise
    finally:
        if handler is not None:
            for name in ("fabe", "transformers"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()


def _train(run: RunDir, cfg: TrainConfig, train_records: list[Record], valid: list[Record] | None) -> None:
    from fabe.training.callbacks import GracefulStop, RunMetricsCallback
    from fabe.training.trainer import build_trainer

    stop = GracefulStop()
    main = _is_main_process()
    try:
        built = build_trainer(cfg, run.path, train_records, valid, callbacks=[RunMetricsCallback(run), stop])
        if main:
            run.set_status("running", finetune="lora" if built.lora else "full", cut_samples=built.counts["cut"],
                           dropped_samples=built.counts["dropped"])
        built.trainer.train(resume_from_checkpoint=_resume_point(run, main))
    finally:
        stop.restore()
    if not main:
        return
    if stop.requested:
        run.set_status("stopped", ended_at=now(), exit_code=0)
        return
    save_final(built.trainer, built.tokenizer, cfg, built.lora, run.final_path)
    run.set_status("finished", ended_at=now(), exit_code=0)


def _resume_point(run: RunDir, main: bool) -> str | None:
    """The last complete checkpoint (Trainer alone would take the highest-numbered folder, even
    one whose save a crash cut off); the main process deletes the unfinished ones."""
    complete = run.checkpoints()
    if main:
        import shutil

        for folder in set(run.checkpoints(complete=False)) - set(complete):
            logger.warning("deleting %s: its save never finished", folder)
            shutil.rmtree(folder, ignore_errors=True)
    if not complete:
        return None
    logger.info("resuming from %s", complete[-1])
    return str(complete[-1])


def save_final(trainer: Any, tokenizer: Any, cfg: TrainConfig, lora: bool, final: Path) -> None:
    """Adapter (or full model) + tokenizer + fabe.json, written aside and renamed into place."""
    from fabe.files import folder_atomic
    from fabe.training.prompt import PROMPT_VERSION

    with folder_atomic(final, replace=True) as tmp:
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json_atomic(tmp / "fabe.json", {
            "base_model": cfg.model, "mode": cfg.mode, "finetune": "lora" if lora else "full",
            "prompt_version": PROMPT_VERSION, "rank_loss": cfg.rank_loss,
            "step": trainer.state.global_step})

