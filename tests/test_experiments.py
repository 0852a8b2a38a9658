"""Runs as experiments (`fabe.runs.experiments`) and the state the Runs page shows: the
options that differ between runs, a run's checkpoints with their size and a quick
evaluation, the saved step and the log's last line after a stop, the first start time and a
fresh ETA after a resume, tokens/s in the metrics, and the `runs compare` and `runs
checkpoints` commands. Runs are real tiny-model trainings of a few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from helpers import wait_for

from fabe.rundir import RunDir, now
from fabe.runs import experiments
from fabe.runs import manager as runs
from fabe.training.config import TrainConfig
from fabe.training.run import create_run, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg(small_dataset, tiny_model_dir):
    def make(out: Path | str = "", **extra) -> TrainConfig:
        values = dict(data=str(small_dataset), model=str(tiny_model_dir), mode="simple", max_steps=4, batch_size=2,
                      eval_steps=0, logging_steps=1, save_steps=1000, max_length=768, out=str(out))
        return TrainConfig(**{**values, **extra})
    return make


def test_the_config_diff_lists_only_the_options_that_differ(tmp_path, cfg):
    a = create_run(cfg(tmp_path / "a", learning_rate=1e-3))
    b = create_run(cfg(tmp_path / "b", learning_rate=5e-4, mode="full", beta=0.3))
    c = create_run(cfg(tmp_path / "c", learning_rate=1e-3))
    diff = experiments.config_diff([a.path, b.path, c.path])
    assert list(diff.columns) == ["a", "b", "c"]
    assert set(diff.index) == {"learning_rate", "mode"}  # out differs always and is left out; beta is 0.3 in all
    assert diff.loc["learning_rate"].tolist() == [1e-3, 5e-4, 1e-3]
    assert diff.loc["mode"].tolist() == ["simple", "full", "simple"]
    assert experiments.config_diff([a.path, c.path]).empty


def test_the_config_diff_refuses_bad_input(tmp_path, cfg):
    a = create_run(cfg(tmp_path / "a"))
    with pytest.raises(ValueError, match="at least two runs, got 1"):
        experiments.config_diff([a.path])
    with pytest.raises(ValueError, match="given twice"):
        experiments.config_diff([a.path, a.path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no config.json"):
        experiments.config_diff([a.path, tmp_path / "empty"])
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "config.json").write_text('{"train": ')
    with pytest.raises(ValueError, match="torn.*not valid JSON"):
        experiments.config_diff([a.path, torn])


def _bytes(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def test_checkpoints_are_listed_with_step_and_size_and_a_quick_evaluation(tmp_path, cfg):
    run = RunDir(train(cfg(tmp_path / "ckpt", save_steps=2)))
    (run.path / "checkpoint-9").mkdir()  # a save cut off by a crash: no trainer_state.json
    (run.path / "checkpoint-9" / "model.safetensors").write_bytes(b"x" * 100)
    infos = experiments.list_checkpoints(run.path)
    assert [(c.name, c.step, c.complete) for c in infos] == [
        ("checkpoint-2", 2, True), ("checkpoint-4", 4, True), ("checkpoint-9", 9, False), ("final", 4, True)]
    assert all(c.size_bytes == _bytes(Path(c.path)) for c in infos) and infos[0].size_bytes > 100_000
    assert all(c.quick is None for c in infos)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        experiments.quick_eval(infos[2].path, 2)
    with pytest.raises(ValueError, match="n must be at least 1"):
        experiments.quick_eval(infos[1].path, 0)
    found = experiments.quick_eval(infos[1].path, 2, max_new_tokens=8)
    assert found["overall"]["records"] == 2 and found["meta"]["data"].endswith("valid.jsonl")
    assert 0.0 <= found["overall"]["exact"] <= 1.0
    quick = {c.name: c.quick for c in experiments.list_checkpoints(run.path)}
    assert quick["checkpoint-4"]["records"] == 2 and quick["checkpoint-4"]["exact"] == found["overall"]["exact"]
    assert quick["checkpoint-2"] is None and quick["final"] is None
    table = experiments.checkpoints_frame(experiments.list_checkpoints(run.path))
    assert table["checkpoint"].tolist() == ["checkpoint-2", "checkpoint-4", "checkpoint-9", "final"]
    assert table.loc[1, "eval_records"] == 2 and table.loc[0, "size_mb"] > 0


def test_run_files_are_copied_whole(tmp_path, cfg):
    run = RunDir(train(cfg(tmp_path / "files", max_steps=2)))
    copies = experiments.copy_run_files(run.path, tmp_path / "out")
    assert [p.name for p in copies] == ["files-train.log", "files-metrics.jsonl"]
    assert copies[0].read_bytes() == run.log_path.read_bytes()
    assert copies[1].read_bytes() == run.metrics_path.read_bytes()
    with pytest.raises(ValueError, match="no such run folder"):
        experiments.copy_run_files(tmp_path / "nope", tmp_path / "out")


def _running_dir(tmp_path: Path, started_at: float, resumed_at: float | None) -> RunDir:
    """A run folder whose status says running, with this process as its (live) pid."""
    run = RunDir(tmp_path / "live")
    run.path.mkdir()
    run.set_status("running", pid=os.getpid(), pid_created=psutil.Process().create_time(), started_at=started_at,
                   resumed_at=resumed_at)
    return run


def test_the_eta_is_only_taken_from_rows_logged_since_the_latest_start(tmp_path):
    t = now()
    run = _running_dir(tmp_path, started_at=t - 1000, resumed_at=t)
    run.append_metrics({"step": 20, "max_steps": 60, "loss": 1.0, "eta_s": 400.0, "time": t - 50})  # before the stop
    info = runs.run_info(run)
    assert info.state == "running" and info.eta_s is None and info.started_at == t - 1000
    run.append_metrics({"step": 23, "max_steps": 60, "loss": 0.9, "eta_s": 70.0, "time": t + 1})
    assert runs.run_info(run).eta_s == 70.0
    assert runs.run_info(run).actions == ("stop",)


def test_stop_then_resume_keeps_the_truth(tmp_path, cfg):
    run = runs.launch(cfg(max_steps=5000, logging_steps=3), "cpu", tmp_path, "long")
    wait_for(lambda: len(run.read_metrics()) >= 2)
    rows = [r for r in run.read_metrics() if r.get("loss") is not None]
    assert rows[-1]["tokens_per_s"] > 0 and rows[-1]["tokens_seen"] > rows[0]["tokens_seen"] > 0
    first_start = run.read_status()["started_at"]
    runs.stop(run.path, grace_s=120)
    info = runs.run_info(run)
    (checkpoint,) = run.checkpoints()
    saved = int(checkpoint.name.split("-")[1])
    assert info.state == "stopped" and info.saved_step == saved and saved >= info.step  # logged every 3rd step only
    last = [line for line in run.log_path.read_text().splitlines() if line.strip()][-1]
    assert info.last_line == last
    assert info.actions == ("resume", "delete") and info.eta_s is None
    runs.resume(run.path, changes={"max_steps": saved + 3})
    wait_for(lambda: runs.reconcile(run)["state"] in ("finished", "failed"))
    status = run.read_status()
    assert status["state"] == "finished", runs.log_tail(run)
    assert status["started_at"] == first_start and status["resumed_at"] > first_start
    info = runs.run_info(run)
    assert info.started_at == first_start and info.max_steps == saved + 3 and info.actions == ("delete",)


def test_runs_compare_and_checkpoints_commands(tmp_path, cfg):
    train(cfg(tmp_path / "one", save_steps=2, max_steps=2))
    train(cfg(tmp_path / "two", save_steps=2, max_steps=2, learning_rate=1e-4))

    def fabe(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fabe", "runs", *args, "--root", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)

    shown = fabe("compare", "one", "two")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["one", "two"] and lines[-1].split()[0] == "learning_rate" and len(lines) == 3
    assert json.loads(fabe("compare", "one", "two", "--json").stdout) == {
        "learning_rate": {"one": TrainConfig().learning_rate, "two": 1e-4}}
    refused = fabe("compare", "one")
    assert refused.returncode == 1 and "at least two runs" in refused.stderr
    listed = fabe("checkpoints", "one", "--json")
    assert [(c["name"], c["step"]) for c in json.loads(listed.stdout)] == [("checkpoint-2", 2), ("final", 2)]
    table = fabe("checkpoints", "one").stdout.splitlines()
    assert table[0].split()[:3] == ["checkpoint", "step", "size_mb"] and table[1].split()[:2] == ["checkpoint-2", "2"]
    assert fabe("checkpoints", "nope").returncode == 1
