"""Weights that carry information: the temperature fitted on a validation split makes the top
weight track how often the top candidate is right, and is stored with the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from fabe.cleaning.calibration import ece, fit_temperature, report


def test_a_fitted_temperature_turns_hundredths_into_informative_weights():
    rng = np.random.default_rng(0)
    # K=4 mean log-likelihoods a few hundredths apart; the top one is right 80% of the time
    scores = -0.05 - 0.03 * np.sort(rng.random((400, 4)), axis=1)
    correct = np.zeros((400, 4), dtype=bool)
    correct[:320, 0] = True
    correct[320:, 2] = True
    t = fit_temperature(scores, correct)
    assert t < 0.05  # sharper than T = 1
    found = report(scores, correct, t)
    assert found["top_exact"] == 0.8 and found["ece_fitted"] < found["ece_t1"]
    assert found["ece_t1"] > 0.5  # at T = 1 every top weight is about 0.25
    assert found["ece_fitted"] < found["ece_t1"] / 2 and found["top_weight_exact_fitted"] > 0.5 > found["top_weight_exact_t1"]


def test_ece_is_zero_when_confidence_is_accuracy_and_no_correct_candidate_gives_t1():
    assert ece(np.array([1.0, 1.0, 0.0]), np.array([True, True, False])) == 0.0
    assert fit_temperature([[-0.1, -0.2]], [[False, False]]) == 1.0


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
