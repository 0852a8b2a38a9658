"""The run manager: detached launches, GPU queueing, truthful states from the process
table, stop/resume/delete, and the `runs` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import wait_for

from fabe.runs import manager as runs
from fabe.rundir import RunDir, failure_hint
from fabe.runs.processes import gpu_list
from fabe.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg(small_dataset, tiny_model_dir):
    def make(steps: int = 6, **extra) -> TrainConfig:
        values = dict(data=str(small_dataset), model=str(tiny_model_dir), mode="simple",
                      max_steps=steps, batch_size=2, eval_steps=0, logging_steps=1,
                      save_steps=1000, max_length=768)
        return TrainConfig(**{**values, **extra})
    return make


def state(run: RunDir) -> str:
    return runs.reconcile(run)["state"]


def test_a_launched_run_trains_detached_and_finishes(tmp_path, cfg):
    run = runs.launch(cfg(), "cpu", tmp_path, "first")
    config = run.read_config()  # written before the run starts: the one copy of its config
    assert config["train"] == {**cfg().to_dict(), "out": str(run.path)}
    assert config["launch"]["gpus"] == "cpu" and config["launch"]["command"][1:] == [
        "-m", "fabe", "train", "--run", str(run.path)]
    wait_for(lambda: state(run) == "finished")
    status = run.read_status()
    assert status["pid"] and status["pid_created"] and status["exit_code"] == 0
    assert "Running training" in run.log_path.read_text()
    (info,) = runs.list_runs(tmp_path)
    assert (info.id, info.state, info.mode, info.step, info.max_steps) == ("first", "finished", "simple", 6, 6)
    assert run.read_config()["train"] == config["train"]  # training did not rewrite it


def test_two_runs_on_one_gpu_run_one_after_the_other(tmp_path, cfg):
    first = runs.launch(cfg(steps=5000), "0", tmp_path, "a")
    wait_for(lambda: len(first.read_metrics()) >= 1)
    second = runs.launch(cfg(steps=2), "0", tmp_path, "b")
    time.sleep(4)
    assert state(first) == "running" and state(second) == "queued"
    assert runs.stop(first.path)["state"] == "stopped"
    wait_for(lambda: state(second) == "finished")
    assert second.read_status()["started_at"] >= first.read_status()["ended_at"] - 1.0
    other = runs.launch(cfg(steps=2), "1", tmp_path, "c")  # another GPU does not wait
    wait_for(lambda: state(other) in ("running", "finished"), timeout=60)


def test_a_killed_run_is_reported_failed_with_its_log_tail(tmp_path, cfg):
    run = runs.launch(cfg(steps=5000), "cpu", tmp_path, "victim")
    wait_for(lambda: len(run.read_metrics()) >= 2)
    os.kill(run.read_status()["pid"], signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: state(run) == "failed", timeout=10)
    assert time.time() - killed < 5
    status = run.read_status()
    assert status["error"] and "loss" in status["error"] + run.log_path.read_text()


def test_a_reused_pid_is_not_mistaken_for_the_run(tmp_path):
    run = RunDir(tmp_path / "ghost")
    run.path.mkdir()
    run.set_status("running", pid=os.getpid(), pid_created=12345.0)  # alive pid, other process
    (run.log_path).write_text("Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory.\n")
    status = runs.reconcile(run)
    assert status["state"] == "failed" and "CUDA out of memory" in status["error"]
    assert "batch_size" in status["hint"]


def test_stop_resume_and_delete(tmp_path, cfg):
    run = runs.launch(cfg(steps=5000, save_steps=1000), "cpu", tmp_path, "long")
    wait_for(lambda: len(run.read_metrics()) >= 3)
    with pytest.raises(ValueError, match="stop it first"):
        runs.delete(run.path, confirm=True)
    status = runs.stop(run.path, grace_s=120)
    assert status["state"] == "stopped"
    (checkpoint,) = run.checkpoints()
    step = int(checkpoint.name.split("-")[1])
    with pytest.raises(ValueError, match="not running"):
        runs.stop(run.path)
    with pytest.raises(ValueError, match="model: the run in .* was trained from"):
        runs.resume(run.path, changes={"model": "other/model"})
    runs.resume(run.path, changes={"max_steps": step + 3})  # a finite goal: a few more steps
    wait_for(lambda: state(run) in ("finished", "failed"))
    assert state(run) == "finished", runs.log_tail(run)
    steps = [r["step"] for r in run.read_metrics() if r["loss"] is not None]
    assert steps[-1] == step + 3
    assert run.read_config()["resumes"][-1]["changes"] == {"max_steps": step + 3}
    with pytest.raises(ValueError, match="confirmation"):
        runs.delete(run.path)
    runs.delete(run.path, confirm=True)
    assert not run.path.exists()


def test_a_bad_launch_creates_nothing(tmp_path, cfg):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(runs.LaunchError, match="bad.jsonl:1: json") as info:
        runs.launch(cfg(data=str(bad), model=str(tmp_path / "no-model")), "0,zero", tmp_path / "r", "x")
    assert not (tmp_path / "r" / "x").exists()
    problems = info.value.problems  # every problem at once: GPUs, data and model
    assert any(p.startswith("gpus:") for p in problems) and any("no such model folder" in p for p in problems)


def test_deepspeed_without_its_package_is_a_launch_problem(tmp_path, cfg):
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    problems = runs.check_launch(cfg(deepspeed="zero3"), "0,1")
    assert any("deepspeed package is not installed" in p for p in problems)
    assert not runs.check_launch(cfg(), "0,1")


def test_a_missing_model_is_refused_and_a_load_failure_gets_a_hint(tmp_path, cfg):
    with pytest.raises(ValueError, match="model: .*no such model folder"):
        runs.launch(cfg(model=str(tmp_path / "no-model")), "cpu", tmp_path, "nomodel")
    assert not (tmp_path / "nomodel").exists()
    hint = failure_hint(f"ModelLoadError: {tmp_path / 'no-model'}: no such model folder")
    assert "model could not be loaded" in hint


def test_no_gpus_is_an_empty_list():
    assert gpu_list() == [] or all("memory_total_mb" in g for g in gpu_list())


def test_runs_cli(tmp_path, small_dataset, tiny_model_dir):
    def fabe(*args):
        return subprocess.run([sys.executable, "-m", "fabe", "runs", *args, "--root", str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)

    result = fabe("launch", "--name", "cli", "--data", str(small_dataset), "--model", str(tiny_model_dir),
                  "--mode", "simple", "--max_steps", "2", "--batch_size", "2", "--eval_steps", "0",
                  "--max_length", "768")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: state(RunDir(tmp_path / "cli")) == "finished")
    listed = json.loads(fabe("list", "--json").stdout)
    assert [r["id"] for r in listed] == ["cli"] and listed[0]["state"] == "finished"
    assert fabe("stop", "cli").returncode == 1
    assert fabe("delete", "cli").returncode == 1  # no --yes and no terminal to ask
    assert fabe("delete", "cli", "--yes").returncode == 0
    assert "no runs" in fabe("list").stdout
