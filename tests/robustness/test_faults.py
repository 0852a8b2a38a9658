"""Faults (issue "hardening"): a training process SIGKILLed mid-step, mid-checkpoint-save and
mid-metrics-write, a disk that fills during a save, the app SIGKILLed and restarted while two
runs train, and a browser that drops its connection during a generation. Afterwards every
run has a truthful state, the last complete checkpoint resumes, no metrics line is lost but
the torn one, and the app answers.

The exact moment of a kill comes from `faulty_train.py`, which patches the child process
only (pause at the point, write a file, wait for the SIGKILL) and runs the real CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port, wait_for

from fabe.runs import manager as runs
from fabe.rundir import MetricsFollower, RunDir
from fabe.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(__file__).with_name("faulty_train.py")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def train_args(small_dataset, tiny_model_dir):
    """Six steps, a metrics line per step, a checkpoint every two."""
    return ["--data", str(small_dataset), "--model", str(tiny_model_dir), "--mode", "simple",
            "--max_steps", "6", "--batch_size", "2", "--eval_steps", "0", "--logging_steps", "1",
            "--save_steps", "2", "--max_length", "768"]


def faulty(run: RunDir, point: str, step: int, args: list[str]) -> subprocess.Popen:
    """The training CLI on `run` with a fault at `step`, output appended to train.log as the
    run manager does, in its own process group."""
    run.path.mkdir(parents=True, exist_ok=True)
    ready = run.path.parent / f".{run.path.name}-{point}-{step}.ready"
    env = {k: v for k, v in os.environ.items() if k != "FABE_MANAGED"}
    where = ["--run", str(run.path)] if "--resume" in args else ["--out", str(run.path)]
    with run.log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, str(HOOK), point, str(step), str(ready), *args, *where],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    proc.ready = ready
    return proc


def kill_when_paused(proc: subprocess.Popen, run: RunDir) -> None:
    """SIGKILL the process group once the child sits at its fault point."""
    wait_for(lambda: proc.ready.exists() or proc.poll() is not None, timeout=180)
    assert proc.ready.exists(), f"the run ended before its fault point:\n{runs.log_tail(run)}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def steps(run: RunDir) -> list[int]:
    return [r["step"] for r in run.read_metrics() if r.get("loss") is not None]


def torn_lines(run: RunDir) -> list[bytes]:
    """Lines of metrics.jsonl that are not JSON."""
    bad = []
    for line in run.metrics_path.read_bytes().splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
    return bad


def state(run: RunDir) -> str:
    return runs.reconcile(run)["state"]


def test_kills_mid_metrics_write_mid_save_and_mid_step_then_resume_from_the_last_complete_checkpoint(
        tmp_path, train_args):
    run = RunDir(tmp_path / "r")
    follower = MetricsFollower(run)

    kill_when_paused(faulty(run, "metrics", 3, train_args), run)  # checkpoint-2 is complete
    assert state(run) == "failed" and run.read_status()["error"]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert not run.metrics_path.read_bytes().endswith(b"\n")  # the torn step-3 line
    assert steps(run) == [1, 2] and follower.poll() == 2
    assert list(follower.columns["step"]) == [1, 2]

    kill_when_paused(faulty(run, "save", 4, ["--resume"]), run)
    assert state(run) == "failed"
    partial = run.path / "checkpoint-4"
    assert (partial / "optimizer.pt").exists() and not (partial / "trainer_state.json").exists()
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]  # never the half-saved one
    assert steps(run) == [1, 2, 3, 4]  # the rows after the torn line are whole lines of their own
    assert len(torn_lines(run)) == 1
    assert follower.poll() == 2 and list(follower.columns["step"]) == [1, 2, 3, 4]

    kill_when_paused(faulty(run, "step", 3, ["--resume"]), run)
    assert state(run) == "failed"
    assert f"resuming from {run.path / 'checkpoint-2'}" in run.log_path.read_text()
    assert not partial.exists()  # the unfinished save was deleted

    before = len(steps(run))
    runs.resume(run.path)
    wait_for(lambda: state(run) in ("finished", "failed"), timeout=180)
    assert state(run) == "finished", runs.log_tail(run)
    assert steps(run)[before:] == [3, 4, 5, 6]  # continued from checkpoint-2's step
    assert json.loads((run.final_path / "fabe.json").read_text())["step"] == 6
    assert len(torn_lines(run)) == 1
    assert follower.poll() == 4 and list(follower.columns["step"])[-4:] == [3, 4, 5, 6]


@pytest.fixture
def small_disk(tmp_path):
    """("diskfull", folder on a 16 MiB tmpfs) where this user may mount one, else ("fsize",
    a plain folder) for a file size limit."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    yield ("diskfull" if mounted else "fsize"), disk
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_filling_up_during_a_save_fails_clearly_and_the_previous_checkpoint_resumes(
        small_disk, train_args):
    point, disk = small_disk
    run = RunDir(disk / "r")
    proc = faulty(run, point, 4, train_args)
    assert proc.wait(timeout=180) != 0
    status = json.loads(run.status_path.read_text())  # still valid JSON
    assert status["state"] == "failed" and state(run) == "failed"
    assert "checkpoint-4" in status["error"] or "File too large" in status["error"], status["error"]
    assert "disk is full" in status["hint"]
    assert not (run.path / "checkpoint-4").exists()  # nothing half-written is left
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert json.loads((run.path / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2

    (disk / "filler").unlink(missing_ok=True)  # space freed
    before = len(steps(run))
    runs.resume(run.path)
    wait_for(lambda: state(run) in ("finished", "failed"), timeout=180)
    assert state(run) == "finished", runs.log_tail(run)
    assert steps(run)[before:] == [3, 4, 5, 6]


class AppProcess:
    """`python app.py` as its own process (so it can be SIGKILLed), and an API client."""

    def __init__(self, runs_dir: Path, log: Path, port: int):
        from gradio_client import Client

        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--runs-dir", str(runs_dir), "--port",
                                          str(port)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
        url = f"http://127.0.0.1:{port}/"
        self.client = wait_for(lambda: self._connect(Client, url), timeout=180, every=1.0)

    def _connect(self, client_cls, url):
        assert self.proc.poll() is None, "the app exited"
        try:
            return client_cls(url, verbose=False, analytics_enabled=False)
        except Exception:  # not listening yet
            return None

    def states(self) -> dict[str, str]:
        table = self.client.predict(None, api_name="/refresh_runs")[0]
        return {row[0]: row[1] for row in table["data"]}

    def loss_points(self, run_id: str) -> int:
        data = json.loads(self.client.predict(run_id, api_name="/show_run")[0]["plot"])["data"]
        return len(data[0]["x"]) if data else 0

    def kill(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def two_runs(tmp_path, small_dataset, tiny_model_dir):
    """Two detached CPU runs that train for minutes; stopped at the end."""
    runs_dir = tmp_path / "runs"
    cfg = dict(data=str(small_dataset), model=str(tiny_model_dir), mode="simple", max_steps=5000,
               batch_size=2, eval_steps=0, logging_steps=1, save_steps=100000, max_length=768)
    both = [runs.launch(TrainConfig(**cfg), "cpu", runs_dir, name) for name in ("one", "two")]
    yield runs_dir, both
    for run in both:
        if state(run) in runs.LIVE:
            runs.stop(run.path, grace_s=30)


def test_the_app_killed_and_restarted_while_two_runs_train_finds_both_and_keeps_plotting(
        tmp_path, two_runs):
    runs_dir, both = two_runs
    port = free_port()
    app = AppProcess(runs_dir, tmp_path / "app.log", port)  # starts while the runs start
    try:
        for run in both:
            wait_for(lambda: len(run.read_metrics()) >= 2, timeout=180)
        assert app.states() == {"one": "running", "two": "running"}
    finally:
        app.kill()
    assert [state(run) for run in both] == ["running", "running"]  # the runs never noticed
    app = AppProcess(runs_dir, tmp_path / "app.log", port)  # the same port, as a user would
    try:
        assert app.states() == {"one": "running", "two": "running"}
        for run in both:
            shown = app.loss_points(run.path.name)
            assert shown >= 2
            wait_for(lambda: app.loss_points(run.path.name) > shown, timeout=120, every=1.0)
    finally:
        app.kill()


@pytest.fixture
def clean_app(tmp_path, monkeypatch):
    """The app in this process, with every generation's outcome recorded."""
    import app
    from fabe.cleaning.cleaner import Cleaner

    outcomes: list[str] = []
    chunk = Cleaner._clean_chunk

    def recorded(self, *args, **kwargs):
        outcomes.append("started")
        try:
            result = chunk(self, *args, **kwargs)
        except BaseException as e:
            outcomes.append(type(e).__name__)
            raise
        outcomes.append("finished")
        return result

    monkeypatch.setattr(Cleaner, "_clean_chunk", recorded)
    demo = app.build_app(tmp_path / "runs")
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True,
                        quiet=True, ssr_mode=False)
    yield f"http://127.0.0.1:{port}/", outcomes
    demo.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_a_browser_dropped_during_a_generation_frees_the_model_for_the_next_one(clean_app, small_dataset):
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    url, outcomes = clean_app
    code = max((json.loads(line)["input"] for line in (small_dataset / "train.jsonl").open()), key=len)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Clean").click()
        page.locator("#clean-input .cm-content").click()
        page.keyboard.insert_text(code)
        page.get_by_role("button", name="Clean", exact=True).click()
        wait_for(lambda: "started" in outcomes, timeout=120)  # decoding the long input
        browser.close()  # the connection drops mid-generation
    wait_for(lambda: len(outcomes) >= 2, timeout=120)
    assert outcomes == ["started", "Cancelled"]  # stopped, not decoded for nobody
    client = Client(url, verbose=False, analytics_enabled=False)
    try:
        answer = client.predict("embedded", "int add(int a, int b) {\n  return a + b;\n}\n", 2, 0.5,
                                "diverse_beam", 24, None, api_name="/clean")
    finally:
        client.close()
    assert re.match(r"2 candidates(, 1 distinct)? from `embedded`", answer[0]), answer[0]
    assert outcomes[-1] == "finished"
