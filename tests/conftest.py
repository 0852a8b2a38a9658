"""Shared fixtures: offline settings, the shared Redis corpus (skipped where absent) and the
embedded tiny model made once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import TINY_TEST_SHAPE

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REDIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "redis_functions.jsonl"


@pytest.fixture(scope="session")
def redis_path() -> Path:
    """Real C functions in ../shared (read-only data that only exists in dev and CI)."""
    if not REDIS.exists():
        pytest.skip(f"{REDIS} is absent (it exists only beside the development checkout and in CI)")
    return REDIS


@pytest.fixture(scope="session")
def redis_functions(redis_path) -> list[str]:
    with redis_path.open() as f:
        return [json.loads(line)["func"] for line in f]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small embedded base model (reduced sizes keep the test fast)."""
    from fabe.training.modeling import TinyConfig, init_tiny

    out = tmp_path_factory.mktemp("models") / "tiny"
    return init_tiny(TinyConfig(out=str(out), **TINY_TEST_SHAPE))


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A built dataset of 48 generated records (train/valid/test)."""
    from fabe.data.builder import BuildConfig, build_dataset

    out = tmp_path_factory.mktemp("data") / "small"
    build_dataset(BuildConfig(out=str(out), n=48, seed=2, split="0.75,0.125,0.125"))
    return out


@pytest.fixture(scope="session")
def small_victim(tmp_path_factory, tiny_model_dir):
    """A small victim classifier (the embedded recipe at toy sizes)."""
    from fabe.defense.victim_training import VictimConfig, train_victim

    return train_victim(VictimConfig(out=str(tmp_path_factory.mktemp("v") / "victim"), tokenizer=str(tiny_model_dir),
                                     n=120, epochs=1, hidden_size=32, num_layers=1, num_heads=2, batch_size=16))
