"""The run directory's files: atomic status, incremental metrics reads, torn lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fabe.rundir import MetricsFollower, RunDir


def test_incremental_reads_return_only_new_complete_lines(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "loss": 2.0})
    rows, offset = run.read_metrics_from(0)
    assert [r["step"] for r in rows] == [1]
    with run.metrics_path.open("a") as f:
        f.write(json.dumps({"step": 2, "loss": 1.5}) + "\n" + '{"step": 3, "lo')  # 3 is half-written
    rows, offset = run.read_metrics_from(offset)
    assert [r["step"] for r in rows] == [2]
    with run.metrics_path.open("a") as f:
        f.write('ss": 1.0}\n')
    rows, offset = run.read_metrics_from(offset)
    assert rows == [{"step": 3, "loss": 1.0}]
    assert run.read_metrics_from(offset) == ([], offset)


def test_a_torn_line_from_a_crash_is_skipped(tmp_path):
    run = RunDir(tmp_path)
    run.metrics_path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n{"step": 4, "x')
    assert [r["step"] for r in run.read_metrics()] == [1, 3]
    rows, _ = run.read_metrics_from(0)
    assert [r["step"] for r in rows] == [1, 3]


def test_status_is_merged_and_replaced_atomically(tmp_path):
    run = RunDir(tmp_path)
    run.set_status("running", pid=12)
    run.set_status("finished", exit_code=0)
    assert run.read_status() == {"pid": 12, "state": "finished", "exit_code": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary file left
    with pytest.raises(ValueError, match="Unknown run state: paused"):
        run.set_status("paused")


def test_the_follower_keeps_columns_and_starts_over_on_a_new_file(tmp_path):
    run = RunDir(tmp_path)
    follower = MetricsFollower(run)
    assert follower.poll() == 0 and follower.columns == {}
    run.append_metrics({"step": 1, "loss": 2.0})
    run.append_metrics({"step": 2, "loss": 1.0, "eval_loss": 1.5})
    assert follower.poll() == 2 and follower.poll() == 0
    as_lists = lambda: {k: [None if v != v else v for v in a.tolist()] for k, a in follower.columns.items()}  # noqa: E731
    assert as_lists() == {"step": [1, 2], "loss": [2.0, 1.0], "eval_loss": [None, 1.5]}
    run.append_metrics({"step": 3, "grad_norm": 0.5})
    assert follower.poll() == 1
    assert as_lists() == {"step": [1, 2, 3], "loss": [2.0, 1.0, None], "eval_loss": [None, 1.5, None],
                          "grad_norm": [None, None, 0.5]}
    run.metrics_path.unlink()  # the run was deleted and a new one took its name
    run.append_metrics({"step": 1, "loss": 9.0})
    assert follower.poll() == 1
    assert as_lists() == {"step": [1], "loss": [9.0]}


def test_rows_logged_again_after_a_resume_supersede_the_ones_before_the_crash(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    follower = MetricsFollower(run)
    for step in (1, 2, 3, 4):
        run.append_metrics({"step": step, "loss": 10.0 - step})
    run.append_metrics({"step": 4, "eval_loss": 5.0})
    follower.poll()
    for step in (3, 4, 5):  # resumed from checkpoint-2: steps 3 and 4 are trained again
        run.append_metrics({"step": step, "loss": 1.0 * step})
    follower.poll()
    assert follower.columns["step"].tolist() == [1, 2, 3, 4, 5]
    assert follower.columns["loss"].tolist() == [9.0, 8.0, 3.0, 4.0, 5.0]
    assert follower.length == 5 and np.isnan(follower.columns["eval_loss"]).all()
    run.append_metrics({"step": 5, "eval_loss": 2.0})  # an eval row at the same step is no restart
    follower.poll()
    assert follower.columns["step"].tolist() == [1, 2, 3, 4, 5, 5]
