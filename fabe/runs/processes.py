"""The processes behind runs: the detached starter, GPU queueing, liveness and signals.

A launch starts a detached *starter* (`python -m fabe runs _start RUN`) in its own process
group, with stdout and stderr appended to `train.log` (never a pipe, so nothing stalls when
no page is reading). The starter records its pid and start time, waits for its GPUs (an
exclusive `flock` per GPU under `<root>/.locks`: a run asking for a busy GPU queues until
the holder exits, crash or not) and then `exec`s the run's training command from its
config.json, keeping its pid and holding the locks until it exits. A pid is only taken for
the run's while its process start time matches (pids are reused).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fabe.rundir import RunDir


def process_alive(pid: int | None, created: float | None) -> bool:
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


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        pass


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


def train_command(run_path: str | Path, gpus: list[int]) -> list[str]:
    """The exact command a launched run executes: training from its config.json alone (with
    `--resume` appended when it continues); several GPUs go through torchrun."""
    head = [sys.executable, "-m", "fabe"] if len(gpus) <= 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={len(gpus)}", "-m", "fabe"]
    return head + ["train", "--run", str(run_path)]


def spawn_starter(run: RunDir, resume: bool) -> None:
    import subprocess

    with run.log_path.open("ab") as log:
        subprocess.run([sys.executable, "-m", "fabe", "runs", "_start", str(run.path), *(["--resume"] * resume)],
                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, start_new_session=True)


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


def start(run_path: str, resume: bool) -> None:
    """The starter (`runs _start`): detach, record pid, wait for GPUs, exec the training."""
    import psutil

    if os.fork():
        os._exit(0)  # the launcher's child returns at once; init adopts this process
    run = RunDir(run_path)
    launch = run.read_config()["launch"]
    gpus = parse_gpus(launch["gpus"])
    run.set_status("queued", pid=os.getpid(), pid_created=psutil.Process().create_time())
    _lock_gpus(run.path.parent, gpus)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "FABE_MANAGED": "1"}
    argv = launch["command"] + (["--resume"] if resume else [])
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


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

