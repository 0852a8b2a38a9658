"""Runs read as experiments: the options that differ between runs (a config diff), the
checkpoints of a run with their step and size on disk, and a quick evaluation of a checkpoint
(exact restoration and trigger removal on the first N records of the run's valid split), so
a learning curve can be read without leaving the Runs page.

A quick evaluation is an ordinary evaluation (`fabe.evaluation.runner.run_eval`) saved under
the run's `evals/` folder, where the Evaluate tab finds it too and where a later listing of
the checkpoints reads it back: nothing of it lives in memory only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fabe.rundir import RunDir, checkpoint_complete

QUICK_PREFIX = "quick"  # evals/quick-N-checkpoint-S: a checkpoint's quick evaluation on N records
QUICK_MAX_NEW_TOKENS = 0  # 0: the cleaner's own bound (1.25 x the input + 16)


def _config(run: RunDir) -> dict[str, Any]:
    try:
        return json.loads(run.config_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run.path.name}: no config.json (not a run folder)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{run.config_path}: not valid JSON ({e})") from None


def _options(config: dict[str, Any]) -> dict[str, Any]:
    """A run's options as one flat mapping: every training option, and the GPUs it ran on."""
    train = config.get("train")
    if not isinstance(train, dict):
        raise ValueError("config.json has no training config (`train`)")
    return {**train, "gpus": config.get("launch", {}).get("gpus", "cpu")}


def config_diff(run_paths: list[str | Path]) -> pd.DataFrame:
    """The options whose values differ between the runs: one row per option, one column per
    run (its id), in the config's own order. Identical options and `out` (always different)
    are left out; an option one run lacks (an older config) shows as None."""
    if len(run_paths) < 2:
        raise ValueError(f"compare: give at least two runs, got {len(run_paths)}")
    runs = [RunDir(p) for p in run_paths]
    ids = [r.path.name for r in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"compare: a run is given twice: {ids}")
    options = {}
    for run in runs:
        try:
            options[run.path.name] = _options(_config(run))
        except ValueError as e:
            raise ValueError(f"{run.path.name}: {e}") from None
    names = list(dict.fromkeys(n for values in options.values() for n in values if n != "out"))
    differ = [n for n in names if len({json.dumps(v.get(n), sort_keys=True) for v in options.values()}) > 1]
    frame = pd.DataFrame({rid: [options[rid].get(n) for n in differ] for rid in ids},
                         index=pd.Index(differ, name="option"), dtype=object)
    return frame


@dataclass
class CheckpointInfo:
    """One saved model of a run: a checkpoint-N (resumable) or final/."""

    name: str  # checkpoint-N or final
    path: str
    step: int | None
    size_bytes: int
    complete: bool  # a save a crash cut off is not (it cannot be loaded or resumed)
    saved_at: float | None  # when its last file was written
    quick: dict[str, Any] | None  # the latest quick evaluation: records, exact, trigger_removal, at


def folder_size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _final_step(final: Path) -> int | None:
    try:
        return json.loads((final / "fabe.json").read_text()).get("step")
    except (OSError, json.JSONDecodeError):
        return None


def _quick_results(run: RunDir, name: str) -> dict[str, Any] | None:
    """The latest saved quick evaluation of the model `name` of the run, if any."""
    found = []
    for path in run.path.glob(f"evals/{QUICK_PREFIX}-*-{name}/eval.json"):
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        overall = result.get("overall", {})
        found.append({"records": overall.get("records"), "exact": overall.get("exact"),
                      "trigger_removal": overall.get("trigger_removal"), "at": result.get("meta", {}).get("at")})
    return max(found, key=lambda r: r["at"] or 0) if found else None


def list_checkpoints(run_path: str | Path) -> list[CheckpointInfo]:
    """Every checkpoint-N of a run (oldest first, unfinished ones too, marked), then final/,
    each with its step, size on disk and latest quick evaluation."""
    run = RunDir(run_path)
    if not run.path.is_dir():
        raise ValueError(f"{run.path}: no such run folder")
    found = []
    for folder in run.checkpoints(complete=False):
        state = folder / "trainer_state.json"
        found.append(CheckpointInfo(folder.name, str(folder), int(folder.name.split("-")[-1]), folder_size(folder),
                                    checkpoint_complete(folder), state.stat().st_mtime if state.exists() else None,
                                    _quick_results(run, folder.name)))
    final = run.final_path
    if (final / "fabe.json").exists():
        found.append(CheckpointInfo("final", str(final), _final_step(final), folder_size(final), True,
                                    (final / "fabe.json").stat().st_mtime, _quick_results(run, "final")))
    return found


def valid_split(run: RunDir) -> Path:
    """The validation file of the dataset a run trained on (what a quick evaluation reads)."""
    from fabe.training.run import data_files

    train = _config(run).get("train", {})
    _, valid = data_files(train.get("data", ""))
    if valid is None:
        raise ValueError(f"{run.path.name}: its dataset {train.get('data')!r} has no valid split; "
                         "give a split to evaluate on")
    return valid


def quick_eval(checkpoint: str | Path, n: int = 20, data: str | Path | None = None, k: int = 4,
               max_new_tokens: int = QUICK_MAX_NEW_TOKENS) -> dict[str, Any]:
    """Exact restoration and trigger removal of one checkpoint (or final/) on the first `n`
    records of `data` (default: the run's valid split), saved as
    `RUN/evals/quick-N-NAME/eval.json`; returns the summary with its meta."""
    from fabe.cleaning.cleaner import CleanConfig
    from fabe.evaluation.runner import run_eval

    checkpoint = Path(checkpoint)
    if not (checkpoint.name == "final" or checkpoint.name.startswith("checkpoint-")):
        raise ValueError(f"{checkpoint}: not a checkpoint-N or final folder of a run")
    if checkpoint.name != "final" and not checkpoint_complete(checkpoint):
        raise ValueError(f"{checkpoint}: not a complete checkpoint (its save never finished)")
    if n < 1:
        raise ValueError(f"quick evaluation: n must be at least 1, got {n}")
    run = RunDir(checkpoint.parent)
    split = Path(data) if data else valid_split(run)
    out = run.path / "evals" / f"{QUICK_PREFIX}-{n}-{checkpoint.name}"
    summary, _ = run_eval(checkpoint, split, CleanConfig(k=k, max_new_tokens=max_new_tokens), limit=n, out=out)
    return summary


def checkpoints_frame(infos: list[CheckpointInfo]) -> pd.DataFrame:
    """The checkpoints as a table (what `runs checkpoints` prints and the page shows)."""
    rows = [{"checkpoint": c.name, "step": c.step, "size_mb": round(c.size_bytes / 2**20, 2),
             "complete": c.complete, "eval_records": (c.quick or {}).get("records"),
             "exact": (c.quick or {}).get("exact"), "trigger_removal": (c.quick or {}).get("trigger_removal")}
            for c in infos]
    return pd.DataFrame(rows, columns=["checkpoint", "step", "size_mb", "complete", "eval_records", "exact",
                                       "trigger_removal"])


def quick_eval_all(run_path: str | Path, n: int = 20, data: str | Path | None = None) -> list[CheckpointInfo]:
    """Quick-evaluate every complete checkpoint (and final/) of a run that has no quick
    evaluation on `n` records yet, oldest first: a learning curve in one call. Returns the
    checkpoints as listed afterwards."""
    for c in list_checkpoints(run_path):
        if c.complete and (c.quick or {}).get("records") != n:
            quick_eval(c.path, n, data)
    return list_checkpoints(run_path)


def copy_run_files(run_path: str | Path, folder: str | Path, names: tuple[str, ...] = ("train.log", "metrics.jsonl"),
                   ) -> list[Path]:
    """Copies of a run's whole log and metrics in `folder` (a snapshot: the run may be
    appending to them), for a download; files the run has not written yet are left out."""
    import shutil

    run, folder = RunDir(run_path), Path(folder)
    if not run.path.is_dir():
        raise ValueError(f"{run.path}: no such run folder")
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        if (run.path / name).is_file():
            copies.append(Path(shutil.copyfile(run.path / name, folder / f"{run.path.name}-{name}")))
    return copies
