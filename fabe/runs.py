"""The run manager: launch, list, stop, resume and delete training runs.

The run directory is the only source of truth; nothing here keeps state in memory, so a
restarted app (or another shell) sees the same runs. A launch writes the config and a
`launch.json`, then starts a detached *starter* (`python -m fabe runs _start RUN`) in its own
process group, with stdout and stderr appended to `train.log` (never a pipe, so nothing
stalls when no page is reading). The starter records its pid and start time, waits for its
GPUs (an exclusive `flock` per GPU under `<root>/.locks`: a run asking for a busy GPU queues
until the holder exits, crash or not) and then `exec`s the training command a user would
type, keeping its pid and holding the locks until it exits. More than one GPU goes through
`torchrun`. Status is reconciled from the process table (pid plus its start time, so a
reused pid is not taken for the run); a run that died without writing its end is marked
`failed` with the tail of its log and a hint.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fabe.rundir import RunDir, now, write_json_atomic

logger = logging.getLogger(__name__)

LIVE = ("queued", "running")
QUEUE_GRACE_S = 30.0  # a queued run may not have recorded its starter's pid yet
HINTS = (
    (r"CUDA out of memory|OutOfMemoryError", "out of GPU memory: lower batch_size or max_length, "
                                             "or turn on gradient checkpointing"),
    (r"no such model folder|cannot load model|not a Hugging Face model folder",
     "the model could not be loaded: check the path or hub id (offline: give a local folder)"),
    (r"DatasetError|: no such file", "the dataset is invalid or missing: run `python -m fabe data check`"),
    (r"No space left on device|Disk quota exceeded|File too large",
     "the disk is full (or a quota or file size limit was hit): free space or lower save_total_limit"),
)


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


def _process_alive(pid: int | None, created: float | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 1.0:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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


def failure_hint(text: str) -> str | None:
    for pattern, hint in HINTS:
        if re.search(pattern, text):
            return hint
    return None


def reconcile(run: RunDir) -> dict:
    """The run's status, corrected from the process table: a live state whose process is
    gone becomes `failed`, with the log tail as the error and a hint."""
    status = run.read_status()
    if status.get("state") not in LIVE:
        return status
    if _process_alive(status.get("pid"), status.get("pid_created")):
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


def run_info(run: RunDir) -> RunInfo:
    status = reconcile(run)
    launch = _read_json(run.path / "launch.json")
    train = launch.get("train") or _read_json(run.config_path).get("train", {})
    last = _last_metrics(run)
    return RunInfo(
        id=run.path.name, path=str(run.path), state=status.get("state", "unknown"),
        mode=train.get("mode"), model=train.get("model"), gpus=launch.get("gpus", "cpu"),
        step=last.get("step"), max_steps=last.get("max_steps"), s_per_step=last.get("s_per_step"),
        eta_s=last.get("eta_s") if status.get("state") == "running" else None,
        started_at=status.get("started_at"), last_loss=last.get("loss"),
        error=status.get("error") if status.get("state") == "failed" else None, hint=status.get("hint"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def list_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and
            ((p / "status.json").exists() or (p / "launch.json").exists())]
    return sorted((run_info(r) for r in runs), key=lambda i: i.id, reverse=True)


def parse_gpus(spec: str | None) -> list[int]:
    """'cpu' or '' -> []; '0,1' -> [0, 1]."""
    if not spec or spec == "cpu":
        return []
    try:
        gpus = [int(g) for g in spec.split(",")]
    except ValueError:
        raise ValueError(f"gpus: expected 'cpu' or a comma list of GPU indices, got {spec!r}") from None
    if len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise ValueError(f"gpus: indices must be distinct and >= 0, got {spec!r}")
    return gpus


def train_command(cfg: Any, run_path: str | Path, gpus: list[int], resume: bool = False) -> list[str]:
    """The exact command a run executes (what 'Preview command' shows)."""
    from fabe.train import config_to_argv

    head = [sys.executable, "-m", "fabe"] if len(gpus) <= 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={len(gpus)}", "-m", "fabe"]
    tail = ["--resume"] if resume else config_to_argv(cfg)
    return head + ["train", *tail, "--out", str(run_path)]


def check_launch(cfg: Any, gpus: str | None) -> list[str]:
    """Every problem a launch would hit, found without loading model weights: GPUs, the
    dataset (each validation error), the model (its tokenizer is loaded) and whether any
    record fits max_length."""
    from fabe.dataset import DatasetError
    from fabe.modeling import ModelLoadError, check_model_source
    from fabe.train import load_data

    problems: list[str] = []
    try:
        parse_gpus(gpus)
    except ValueError as e:
        problems.append(str(e))
    train = None
    try:
        train, _, files = load_data(cfg)
    except DatasetError as e:
        problems += e.errors
    except ValueError as e:
        problems.append(str(e))
    if getattr(cfg, "deepspeed", "") and importlib.util.find_spec("deepspeed") is None:
        problems.append("deepspeed: the deepspeed package is not installed (pip install deepspeed), "
                        "or leave DeepSpeed empty for plain DDP")
    if train is not None:
        problems += _model_problems(cfg, train, files[0])
    elif cfg.model != "embedded":
        try:
            check_model_source(cfg.model)
        except ModelLoadError as e:
            problems.append(f"model: {e}")
    return problems


def _model_problems(cfg: Any, train: list, train_file: Path) -> list[str]:
    """A model that cannot be loaded, or training data none of which fits max_length."""
    from fabe.modeling import ModelLoadError
    from fabe.train import preflight

    try:
        preflight(cfg, train, train_file)
    except ModelLoadError as e:
        return [f"model: {e}"]
    except ValueError as e:
        return [str(e)]
    return []


def launch(cfg: Any, gpus: str | None = "cpu", root: str | Path = "runs",
           run_id: str | None = None) -> RunDir:
    """Validate `cfg` (a TrainConfig) and its data, create the run directory and start it
    (or queue it behind runs holding its GPUs). Returns at once."""
    import yaml

    from fabe.train import load_data

    gpu_list = parse_gpus(gpus)
    train, _, files = load_data(cfg)  # bad input fails here, before anything exists
    problems = _model_problems(cfg, train, files[0])
    if problems:
        raise ValueError("\n".join(problems))
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.mode}"
    run = RunDir(Path(root) / run_id)
    if run.path.exists():
        raise FileExistsError(f"{run.path}: a run with this name exists")
    run.path.mkdir(parents=True)
    cfg.out = str(run.path)
    (run.path / "train.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    _queue(run, gpu_list, train_command(cfg, run.path, gpu_list), asdict(cfg))
    return run


def _queue(run: RunDir, gpus: list[int], argv: list[str], train: dict) -> None:
    write_json_atomic(run.path / "launch.json", {"argv": argv, "gpus": ",".join(map(str, gpus)) or "cpu",
                                                 "train": train, "created_at": now()})
    run.set_status("queued", queued_at=now(), pid=None, pid_created=None, error=None, hint=None,
                   ended_at=None, exit_code=None)
    _spawn_starter(run)


def _spawn_starter(run: RunDir) -> None:
    import subprocess

    with run.log_path.open("ab") as log:
        subprocess.run([sys.executable, "-m", "fabe", "runs", "_start", str(run.path)],
                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True,
                       start_new_session=True)


def _lock_gpus(root: Path, gpus: list[int]) -> list[int]:
    """Block until every GPU's lock is ours; the fds survive exec (held until exit)."""
    import fcntl

    locks = root / ".locks"
    locks.mkdir(exist_ok=True)
    fds = []
    for gpu in sorted(gpus):  # one order everywhere: no deadlock between two runs
        fd = os.open(locks / f"gpu{gpu}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.set_inheritable(fd, True)
        fds.append(fd)
    return fds


def start(run_path: str) -> None:
    """The starter (`runs _start`): detach, record pid, wait for GPUs, exec the training."""
    import psutil

    if os.fork():
        os._exit(0)  # the launcher's child returns at once; init adopts this process
    run = RunDir(run_path)
    launch_info = _read_json(run.path / "launch.json")
    gpus = parse_gpus(launch_info.get("gpus"))
    run.set_status("queued", pid=os.getpid(), pid_created=psutil.Process().create_time())
    _lock_gpus(run.path.parent, gpus)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "FABE_MANAGED": "1"}
    sys.stdout.flush()
    os.execvpe(launch_info["argv"][0], launch_info["argv"], env)


def stop(run_path: str | Path, grace_s: float = 120.0) -> dict:
    """SIGTERM to the run's process group (training saves a checkpoint and stops at the end
    of its step), SIGKILL after `grace_s`; the state ends `stopped`."""
    run = RunDir(run_path)
    status = reconcile(run)
    if status.get("state") not in LIVE:
        raise ValueError(f"{run.path.name}: not running (state {status.get('state')})")
    pid = status.get("pid")
    if pid and _process_alive(pid, status.get("pid_created")):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline and _process_alive(pid, status.get("pid_created")):
            time.sleep(0.2)
        if _process_alive(pid, status.get("pid_created")):
            _signal_group(pid, signal.SIGKILL)
    status = run.read_status()
    if status.get("state") in LIVE:
        status = run.set_status("stopped", ended_at=now(), exit_code=None)
    return status


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        pass


def resume(run_path: str | Path) -> RunDir:
    """Start a stopped or failed run again from its last checkpoint."""
    run = RunDir(run_path)
    state = reconcile(run).get("state")
    if state in LIVE:
        raise ValueError(f"{run.path.name}: already {state}")
    if not run.config_path.exists():
        raise ValueError(f"{run.path.name}: never started (no config.json); launch it anew")
    launch_info = _read_json(run.path / "launch.json")
    gpus = parse_gpus(launch_info.get("gpus"))
    train = launch_info.get("train") or run.read_config()["train"]
    _queue(run, gpus, train_command(None, run.path, gpus, resume=True), train)
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


def gpu_list() -> list[dict]:
    """[{index, name, memory_used_mb, memory_total_mb}] from NVML; [] without GPUs."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "memory_used_mb": mem.used // 2**20, "memory_total_mb": mem.total // 2**20})
        return gpus
    finally:
        pynvml.nvmlShutdown()


def info_dicts(runs: list[RunInfo]) -> list[dict[str, Any]]:
    return [asdict(r) for r in runs]
