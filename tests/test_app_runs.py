"""The app and a training run are independent (no browser): the run's output goes to
train.log, never to a pipe the page must drain, so closing every tab, or the app itself,
leaves it training; a restarted app finds it from the run directory and keeps plotting it.
Driven through the app's HTTP API with gradio_client, as a second browser tab would."""

from __future__ import annotations

import json
import os

import pytest

from helpers import free_port, wait_for

from fabe.runs import manager as runs
from fabe.training.config import TrainConfig


class App:
    """The real app on a free loopback port, and an API client of it."""

    def __init__(self, runs_dir):
        import app
        from gradio_client import Client

        self.demo = app.build_app(runs_dir)
        port = free_port()
        self.demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                 quiet=True, ssr_mode=False)
        self.client = Client(f"http://127.0.0.1:{port}/", verbose=False)

    def table(self) -> dict[str, list]:
        table = self.client.predict(None, api_name="/refresh_runs")[0]
        return {row[0]: row for row in table["data"]}

    def loss_points(self, run_id: str) -> int:
        plot = self.client.predict(run_id, api_name="/show_run")[0]
        data = json.loads(plot["plot"])["data"]
        return len(data[0]["x"]) if data else 0

    def close(self) -> None:
        self.client.close()
        self.demo.close()


@pytest.fixture(scope="module")
def training(tmp_path_factory, small_dataset, tiny_model_dir):
    """A CPU run that trains for minutes, logging every step; stopped at the end."""
    runs_dir = tmp_path_factory.mktemp("app-runs")
    cfg = TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), mode="simple", max_steps=5000,
                      batch_size=2, eval_steps=0, logging_steps=1, save_steps=100000, max_length=768)
    run = runs.launch(cfg, "cpu", runs_dir, "long")
    wait_for(lambda: len(run.read_metrics()) >= 2)
    yield runs_dir, run
    runs.stop(run.path, grace_s=30)


def test_a_run_writes_to_its_log_and_outlives_every_client_and_the_app(training):
    runs_dir, run = training
    pid = run.read_status()["pid"]
    log = os.path.realpath(run.log_path)
    assert os.path.realpath(f"/proc/{pid}/fd/1") == log and os.path.realpath(f"/proc/{pid}/fd/2") == log
    app = App(runs_dir)
    assert app.loss_points("long") >= 2
    app.close()  # every tab closed, and the server gone
    steps = len(run.read_metrics())
    wait_for(lambda: len(run.read_metrics()) >= steps + 3)
    assert runs.reconcile(run)["state"] == "running"


def test_a_restarted_app_lists_the_run_as_running_and_keeps_plotting_it(training):
    runs_dir, run = training
    first = App(runs_dir)
    assert first.table()["long"][1] == "running"
    first.close()
    second = App(runs_dir)  # knows nothing but the runs directory
    try:
        row = second.table()["long"]
        assert row[1] == "running" and row[2] == "simple"
        shown = second.loss_points("long")
        assert shown >= 2
        wait_for(lambda: second.loss_points("long") > shown)
    finally:
        second.close()
