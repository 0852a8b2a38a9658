"""Load (issue "hardening"): while a run trains, 20 API clients at once ask for the runs
table and the selected run's charts, then 10 cleaning requests are queued at once on one
loaded cleaner. Every request is answered with a well-formed result (none errors, none
hangs) and the run keeps training throughout. Speed under load is measured, not asserted,
by bench/load.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import free_port, wait_for

from fabe.runs import manager as runs
from fabe.training.config import TrainConfig

CLIENTS, ROUNDS, CLEANS = 20, 3, 10
ANSWER_S = 240  # generous: every request must be answered well within this
CODE = "int add(int a, int b)\n{\n    if (rand() < 0) printf(\"fail\");\n    return a + b;\n}"


@pytest.fixture(scope="module")
def training(tmp_path_factory, small_dataset, tiny_model_dir):
    """A detached CPU run that trains for minutes, logging every step; stopped at the end."""
    runs_dir = tmp_path_factory.mktemp("load-runs")
    cfg = TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), mode="simple", max_steps=5000,
                      batch_size=2, eval_steps=0, logging_steps=1, save_steps=100000, max_length=768)
    run = runs.launch(cfg, "cpu", runs_dir, "load")
    wait_for(lambda: len(run.read_metrics()) >= 2)
    yield runs_dir, run
    runs.stop(run.path, grace_s=30)


@pytest.fixture(scope="module")
def app_url(training, tmp_path_factory):
    import app

    demo = app.build_app(training[0], roots=[tmp_path_factory.getbasetemp()])  # the tiny model lives there
    port = free_port()
    demo.queue(default_concurrency_limit=4).launch(  # the limit app.main sets
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


def steps(run) -> int:
    return run.read_metrics()[-1]["step"]


def poll(url: str) -> list[tuple[str, str, int]]:
    """One user's tab: the runs table and the run's charts, ROUNDS times; what each showed."""
    c = client(url)
    try:
        seen = []
        for _ in range(ROUNDS):
            table = c.predict(None, api_name="/refresh_runs")[0]
            row = next(r for r in table["data"] if r[0] == "load")
            loss, _lr, progress, *_ = c.predict("load", api_name="/show_run")
            points = json.loads(loss["plot"])["data"][0]["x"]
            seen.append((row[1], progress, len(points)))
        return seen
    finally:
        c.close()


def test_twenty_clients_polling_status_and_metrics_are_all_answered_while_the_run_trains(training, app_url):
    _, run = training
    before = steps(run)
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [f.result(timeout=ANSWER_S) for f in [pool.submit(poll, app_url) for _ in range(CLIENTS)]]
    assert len(answers) == CLIENTS and all(len(a) == ROUNDS for a in answers)
    for seen in answers:
        for state, progress, points in seen:
            assert state == "running"
            assert "<b>load</b>: running, step " in progress and "/5000" in progress
            assert points >= 1
    assert steps(run) > before  # the run kept training under the load
    assert runs.reconcile(run)["state"] == "running"


def test_ten_cleaning_requests_queued_at_once_are_all_answered_while_the_run_trains(
        training, app_url, tiny_model_dir):
    _, run = training
    source = str(tiny_model_dir)
    users = [client(app_url) for _ in range(CLEANS)]
    try:
        assert users[0].predict(source, api_name="/load_cleaner").startswith(f"Loaded `{source}`")
        before = steps(run)
        jobs = [u.submit(source, CODE, 2, 0.5, "diverse_beam", 6, api_name="/clean") for u in users]
        results = [job.result(timeout=ANSWER_S) for job in jobs]
    finally:
        for u in users:
            u.close()
    for message, table, *_ in results:
        assert message.startswith("2 candidates") and f"from `{source}`" in message
        rows = table["data"]  # one row per distinct candidate, with its count
        assert rows[0][0] == 1 and sum(row[1] for row in rows) == 2
        assert all(isinstance(row[3], float) and 0 <= row[2] <= 1 for row in rows)
    assert steps(run) > before
    assert runs.reconcile(run)["state"] == "running"
