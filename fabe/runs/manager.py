"""The run manager: launch, list, stop, resume and delete training runs.

The run directory is the only source of truth; nothing here keeps state in memory, so a
restarted app (or another shell) sees the same runs. A launch checks everything it can
without loading weights and reports every problem at once, then writes the run folder's
config.json (the resolved config, the GPUs and the command) and starts the run detached
(`fabe.runs.processes`): the process trains from that file alone. Status is reconciled
from the process table; a run that died without writing its end is marked `failed` with
the tail of its log and a hint.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fabe.embedded import EMBEDDED
from fabe.rundir import RunDir, failure_hint, now
from fabe.runs.processes import (
    parse_gpus,
    process_alive,
    signal_group,
    spawn_starter,
    train_command,
)
from fabe.training.config import TrainConfig, config_problems

logger = logging.getLogger(__name__)

LIVE = ("queued", "running")
QUEUE_GRACE_S = 30.0  # a queued run may not have recorded its starter's pid yet


class LaunchError(ValueError):
    """Every problem that keeps a run from launching; `problems` lists them."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class RunInfo:
    id: str
    path: str
    state: str
    mode: str | None
    model: str | None
    gpus: str
    step: int | None
    max_steps: int | None
    s_per_step: float | None
    eta_s: float | None
    started_at: float | None
    last_loss: float | None
    error: str | None
    hint: str | None
    saved_step: int | None = None  # the last complete checkpoint: where a resume starts
    resumed_at: float | None = None  # the latest resume (started_at stays the first start)
    last_line: str = ""  # the last line of train.log
    actions: tuple[str, ...] = ()  # what can be done to the run in its state (ACTIONS)


ACTIONS = {"stop": LIVE, "resume": ("stopped", "failed"), "delete": ("finished", "failed", "stopped")}


def actions_for(state: str) -> tuple[str, ...]:
    """The actions that apply to a run in `state` (a page disables the others). Resume is
    offered for stopped and failed runs; a finished one continues with more steps through
    `runs resume RUN --max_steps N`."""
    return tuple(a for a, states in ACTIONS.items() if state in states)


def _file_end(path: Path, size: int) -> str:
    """The last `size` bytes of a file as text ("" when it does not exist)."""
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read().decode("utf-8", errors="replace")


def log_tail(run: RunDir, lines: int = 30) -> str:
    """The last `lines` lines of train.log, read from its end."""
    text = _file_end(run.log_path, 64 * 1024)
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def reconcile(run: RunDir) -> dict:
    """The run's status, corrected from the process table: a live state whose process is
    gone becomes `failed`, with the log tail as the error and a hint."""
    status = run.read_status()
    if status.get("state") not in LIVE:
        return status
    if process_alive(status.get("pid"), status.get("pid_created")):
        return status
    if status.get("state") == "queued" and not status.get("pid") \
            and now() - status.get("queued_at", 0) < QUEUE_GRACE_S:
        return status  # the starter has not said hello yet
    tail = log_tail(run, 12)
    return run.set_status("failed", ended_at=now(), exit_code=None,
                          error=tail or "the process ended without a word", hint=failure_hint(tail))


def _last_metrics(run: RunDir) -> dict:
    """The last complete training row of metrics.jsonl (reads only the file's end)."""
    for line in reversed(_file_end(run.metrics_path, 16 * 1024).splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("loss") is not None:
            return row
    return {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def last_line(run: RunDir) -> str:
    """The last non-empty line of train.log ("" when there is none)."""
    lines = [line for line in log_tail(run, 5).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _current_eta(status: dict, last: dict) -> float | None:
    """The ETA of a running run, from a metrics row logged since its latest (re)start: a row
    from before a stop measured another process (and perhaps another max_steps)."""
    if status.get("state") != "running" or last.get("eta_s") is None:
        return None
    since = max(status.get("started_at") or 0, status.get("resumed_at") or 0)
    return last["eta_s"] if (last.get("time") or 0) >= since else None


def _max_steps(train: dict, last: dict) -> int | None:
    """The run's goal: its config's max_steps (a resume may have raised it), else the logged one."""
    goal = train.get("max_steps")
    return goal if isinstance(goal, int) and goal > 0 else last.get("max_steps")


def run_info(run: RunDir) -> RunInfo:
    status = reconcile(run)
    config = _read_json(run.config_path)
    train, launch = config.get("train", {}), config.get("launch", {})
    last, state = _last_metrics(run), status.get("state", "unknown")
    return RunInfo(
        id=run.path.name, path=str(run.path), state=state,
        mode=train.get("mode"), model=train.get("model"), gpus=launch.get("gpus", "cpu"),
        step=last.get("step"), max_steps=_max_steps(train, last), s_per_step=last.get("s_per_step"),
        eta_s=_current_eta(status, last), started_at=status.get("started_at"), last_loss=last.get("loss"),
        error=status.get("error") if state == "failed" else None, hint=status.get("hint"),
        saved_step=run.saved_step(), resumed_at=status.get("resumed_at"), last_line=last_line(run),
        actions=actions_for(state))


def list_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "status.json").exists()]
    return sorted((run_info(r) for r in runs), key=lambda i: i.id, reverse=True)


def _system_problems(values: dict[str, Any], gpus: str | None) -> list[str]:
    """GPUs, and packages the options need (DeepSpeed, the report_to integrations)."""
    problems = []
    try:
        parse_gpus(gpus)
    except ValueError as e:
        problems.append(str(e))
    if values.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        problems.append("deepspeed: the deepspeed package is not installed (pip install deepspeed), "
                        "or leave DeepSpeed empty for plain DDP")
    for name in str(values.get("report_to", "")).split(","):
        name = name.strip()
        if name and name not in ("none", "all") and importlib.util.find_spec(name) is None:
            problems.append(f"report_to: {name}: its package is not installed (pip install {name}), "
                            "or report to none")
    return problems


def _input_problems(values: dict[str, Any], skip: Collection[str]) -> list[str]:
    """The dataset (every validation error), the model (its tokenizer is loaded) and whether
    any record fits max_length; fields in `skip` are not read."""
    from fabe.data.dataset import DatasetError
    from fabe.training.modeling import ModelLoadError, check_model_source
    from fabe.training.run import load_data, preflight

    cfg = SimpleNamespace(**values)
    problems: list[str] = []
    train = None
    if "data" not in skip:
        try:
            train, _, files = load_data(cfg)
        except DatasetError as e:
            problems += e.errors
        except ValueError as e:
            problems.append(str(e))
    if "model" in skip:
        return problems
    try:
        if train is not None and "max_length" not in skip and cfg.max_length >= 16:
            preflight(cfg, train, files[0])
        elif cfg.model != EMBEDDED:
            check_model_source(cfg.model)
    except ModelLoadError as e:
        problems.append(f"model: {e}")
    except ValueError as e:
        problems.append(str(e))
    return problems


def check_launch(cfg: TrainConfig | dict[str, Any], gpus: str | None, skip: Collection[str] = ()) -> list[str]:
    """Every problem a launch would hit, found without loading model weights: the options
    (a dict of values may hold bad ones), the GPUs and packages, the dataset, the model and
    whether any record fits max_length. Fields in `skip` (paths refused elsewhere) are not
    read."""
    values = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
    return config_problems(values) + _system_problems(values, gpus) + _input_problems(values, skip)


@dataclass
class LaunchPlan:
    """What a launch writes and runs: the run folder, the config it trains with and the
    `launch` entry of its config.json (GPUs and the command)."""

    path: Path
    cfg: TrainConfig
    launch: dict[str, Any]

    def config_json(self) -> dict[str, Any]:
        """config.json as the launch writes it, but for `provenance` (hashed at launch)."""
        return {"train": self.cfg.to_dict(), "launch": self.launch}


def launch_plan(cfg: TrainConfig, gpus: str | None = "cpu", root: str | Path = "runs",
                run_id: str | None = None) -> LaunchPlan:
    gpu_ids = parse_gpus(gpus)
    path = Path(root) / (run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.mode}")
    return LaunchPlan(path, replace(cfg, out=str(path)), {
        "gpus": ",".join(map(str, gpu_ids)) or "cpu", "command": train_command(path, gpu_ids)})


def launch(cfg: TrainConfig, gpus: str | None = "cpu", root: str | Path = "runs",
           run_id: str | None = None) -> RunDir:
    """Check `cfg` and its data (LaunchError with every problem), create the run folder with
    its config.json and start it (or queue it behind runs holding its GPUs). Returns at once."""
    from fabe.training.run import create_run

    problems = check_launch(cfg, gpus)
    if problems:
        raise LaunchError(problems)
    plan = launch_plan(cfg, gpus, root, run_id)
    if plan.path.exists():
        raise FileExistsError(f"{plan.path}: a run with this name exists")
    run = create_run(plan.cfg, launch={**plan.launch, "at": now()})
    _queue(run, resume=False)
    return run


def _queue(run: RunDir, resume: bool) -> None:
    run.set_status("queued", queued_at=now(), pid=None, pid_created=None, error=None, hint=None,
                   ended_at=None, exit_code=None)
    spawn_starter(run, resume)


def stop(run_path: str | Path, grace_s: float = 120.0) -> dict:
    """SIGTERM to the run's process group (training saves a checkpoint and stops at the end
    of its step), SIGKILL after `grace_s`; the state ends `stopped`."""
    run = RunDir(run_path)
    status = reconcile(run)
    if status.get("state") not in LIVE:
        raise ValueError(f"{run.path.name}: not running (state {status.get('state')})")
    pid = status.get("pid")
    if pid and process_alive(pid, status.get("pid_created")):
        signal_group(pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline and process_alive(pid, status.get("pid_created")):
            time.sleep(0.2)
        if process_alive(pid, status.get("pid_created")):
            signal_group(pid, signal.SIGKILL)
    status = run.read_status()
    if status.get("state") in LIVE:
        status = run.set_status("stopped", ended_at=now(), exit_code=None)
    return status


def resume(run_path: str | Path, changes: dict[str, Any] | None = None) -> RunDir:
    """Start a stopped or failed run again from its last checkpoint, with `changes` (e.g.
    more max_steps) written into its config.json first. A run started by hand (`python -m
    fabe train`, no `launch` entry) is given one on the CPU."""
    from fabe.files import write_json_atomic
    from fabe.training.run import change_run_config

    run = RunDir(run_path)
    state = reconcile(run).get("state")
    if state in LIVE:
        raise ValueError(f"{run.path.name}: already {state}")
    config = _read_json(run.config_path)
    if "train" not in config:
        raise ValueError(f"{run.path.name}: no config.json with a training config; launch it anew")
    if changes:
        change_run_config(run, changes)
    if "launch" not in config:
        config = run.read_config()
        config["launch"] = {"gpus": "cpu", "command": train_command(run.path, []), "at": now()}
        write_json_atomic(run.config_path, config)
    _queue(run, resume=True)
    return run


def delete(run_path: str | Path, confirm: bool = False) -> None:
    """Delete a run that is not queued or running; `confirm` must be True."""
    run = RunDir(run_path)
    if not confirm:
        raise ValueError(f"{run.path.name}: deleting a run needs confirmation")
    state = reconcile(run).get("state")
    if state in LIVE:
        raise ValueError(f"{run.path.name}: is {state}; stop it first")
    shutil.rmtree(run.path)


def info_dicts(runs: list[RunInfo]) -> list[dict[str, Any]]:
    return [asdict(r) for r in runs]
