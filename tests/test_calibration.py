"""Weights that carry information: the temperature fitted on a validation split makes the top
weight track how often the top candidate is right, and is stored with the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fabe.cleaning.calibration import ece, fit_temperature, report, top_confidence


def _records(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K=4 distinct candidates whose mean log-likelihoods differ by hundredths: where the top
    leads by 0.05 it is right 95% of the time, where it leads by 0.005, 40%."""
    rng = np.random.default_rng(0)
    easy = np.arange(n) < n // 2
    scores = -0.2 - 0.1 * rng.random((n, 4))
    scores[:, 0] = scores[:, 1:].max(axis=1) + np.where(easy, 0.05, 0.005)
    right = np.where(easy, rng.random(n) < 0.95, rng.random(n) < 0.40)
    same = np.zeros((n, 4), dtype=bool)
    same[:, 0] = True
    return scores, same, right


def test_a_fitted_temperature_turns_hundredths_into_informative_weights():
    scores, same, right = _records()
    t = fit_temperature(scores, same, right)
    assert t < 0.1  # sharper than T = 1
    found = report(scores, same, right, t)
    assert found["ece_t1"] > 0.4  # at T = 1 every top weight is about 0.25 for a top right 2 times in 3
    assert found["ece_fitted"] < found["ece_t1"] / 3
    assert found["top_weight_exact_fitted"] > found["top_weight_wrong_fitted"] + 0.1  # it tells them apart
    assert found["top_weight_exact_t1"] < 0.3


def test_the_top_confidence_counts_identical_copies_and_all_identical_cannot_be_tuned():
    scores = np.array([[-0.1, -0.1, -0.3, -0.3]])
    same = np.array([[True, True, False, False]])
    assert top_confidence(scores, same, 1.0)[0] == pytest.approx(2 / (2 + 2 * np.exp(-0.2)))
    assert fit_temperature([[-0.1, -0.1]], [[True, True]], [False]) == 1.0  # one code: no T changes it
    assert fit_temperature([], [], []) == 1.0
    assert ece(np.array([1.0, 1.0, 0.0]), np.array([True, True, False])) == 0.0


def test_calibrate_stores_the_fit_in_fabe_json_and_the_cleaner_uses_it(tmp_path, tiny_model_dir, small_dataset):
    import shutil

    from fabe.cleaning.cleaner import Cleaner

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    result = subprocess.run([sys.executable, "-m", "fabe", "calibrate", "--model", str(model), "--data",
                             str(small_dataset / "valid.jsonl"), "--limit", "3", "--k", "2", "--max_new_tokens", "4",
                             "--json"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    stored = json.loads((model / "fabe.json").read_text())["calibration"]
    assert stored == found and found["records"] == 3 and found["k"] == 2
    assert Cleaner.load(model).temperature == found["temperature"]
