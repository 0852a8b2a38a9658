"""The duration estimate before launch: the probe times the run's own steps, evaluation and
save and scales them to the run's steps, evaluations and checkpoints; the child-process path
the page uses returns the same figures; bad input is refused with the field named."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fabe.training.config import TrainConfig
from fabe.training.estimate import Estimate, format_duration, probe, probe_in_child, run_steps


def _cfg(small_dataset, tiny_model_dir, **extra) -> TrainConfig:
    values = dict(data=str(small_dataset), model=str(tiny_model_dir), mode="full", max_steps=40, batch_size=4,
                  logging_steps=5, eval_steps=15, save_steps=10, max_length=768, precision="fp32")
    return TrainConfig(**{**values, **extra})


def test_probe_scales_the_timed_step_evaluation_and_save_to_the_run(small_dataset, tiny_model_dir, tmp_path):
    stages: list[str] = []
    cfg = _cfg(small_dataset, tiny_model_dir, out=str(tmp_path / "never"))
    est = probe(cfg, steps=2, progress=stages.append)
    assert (est.steps, est.probe_steps, est.evals, est.saves) == (40, 2, 2, 5)  # 40 // 15 evals, 40 // 10 + final
    assert est.eval_records == 6  # the small dataset's valid split, encoded
    assert est.s_per_step > 0 and est.eval_s > 0 and est.load_s > 0 and est.device == "cpu"
    parts = est.load_s + 40 * est.s_per_step + 2 * est.eval_s + 5 * est.save_s
    assert est.total_s == pytest.approx(parts)
    assert [s.split()[0] for s in stages] == ["loading", "timing", "timing", "timing"]
    assert "2 timed steps" in est.basis() and "2 evaluations of 6 records" in est.basis()
    assert not (tmp_path / "never").exists()  # a probe leaves no run folder behind


def test_a_run_without_evaluation_or_max_steps_counts_its_epochs(small_dataset, tiny_model_dir):
    cfg = _cfg(small_dataset, tiny_model_dir, max_steps=-1, num_train_epochs=2.0, eval_steps=0)
    est = probe(cfg, steps=1)
    assert est.steps == run_steps(cfg, 36) == 18  # 36 train records, 4 per step, 2 epochs
    assert est.evals == 0 and "evaluations" not in est.basis()


def test_run_steps_and_durations():
    cfg = TrainConfig(data="d", max_steps=-1, num_train_epochs=1.5, batch_size=4, gradient_accumulation_steps=2)
    assert run_steps(cfg, 100) == 20  # ceil(1.5 * ceil(100 / 8))
    assert run_steps(cfg, 100, world_size=2) == 11
    assert run_steps(TrainConfig(data="d", max_steps=7), 10**6) == 7
    assert [format_duration(s) for s in (42, 600, 7500)] == ["42 s", "10 min", "2 h 05 min"]


def test_the_child_process_path_returns_the_probe(small_dataset, tiny_model_dir):
    lines: list[str] = []
    est = probe_in_child(_cfg(small_dataset, tiny_model_dir, max_steps=12), [], steps=1, on_line=lines.append)
    assert isinstance(est, Estimate) and est.steps == 12 and est.probe_steps == 1
    assert lines[0] == "loading the model and encoding the data"


def test_the_cli_prints_the_estimate_as_json(small_dataset, tiny_model_dir):
    out = subprocess.run([sys.executable, "-m", "fabe", "estimate", "--data", str(small_dataset), "--model",
                          str(tiny_model_dir), "--max_steps", "9", "--eval_steps", "0", "--max_length", "768",
                          "--probe_steps", "1", "--json"], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["steps"] == 9 and got["evals"] == 0 and got["total_s"] > 0


def test_a_bad_dataset_is_refused_with_its_field(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="data: .*no such file"):
        probe(TrainConfig(data=str(tmp_path / "missing"), model=str(tiny_model_dir)))
    with pytest.raises(ValueError, match="(?s)the probe failed:.*data: .*no such file"):
        probe_in_child(TrainConfig(data=str(tmp_path / "missing"), model=str(tiny_model_dir)), [])
