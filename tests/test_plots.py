"""The Runs tab's charts: every loss series with its smoothing, thinned for long runs, the
latest value of a step logged again after a resume."""

from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from pages.plots import MAX_POINTS, loss_figure, lr_figure  # noqa: E402


def _traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_a_full_mode_run_shows_each_loss_raw_and_smoothed_and_eval():
    columns = {"step": [10, 20, 20, 30], "loss": [3.0, 2.0, None, 1.0], "mle_loss": [2.0, 1.5, None, 0.8],
               "rank_loss": [1.0, 0.5, None, 0.2], "eval_loss": [None, None, 1.7, None],
               "learning_rate": [1e-3, 9e-4, None, 8e-4]}
    traces = _traces(loss_figure(columns))
    assert set(traces) == {f"{n} ({k})" for n in ("total", "MLE", "ranking") for k in ("raw", "smoothed")} | {"eval"}
    assert list(traces["total (raw)"].x) == [10, 20, 30] and list(traces["total (raw)"].y) == [3.0, 2.0, 1.0]
    assert traces["total (smoothed)"].y[1] == pytest.approx(0.9 * 3.0 + 0.1 * 2.0)
    assert list(traces["eval"].y) == [1.7]
    assert list(lr_figure(columns).data[0].y) == [1e-3, 9e-4, 8e-4]


def test_a_resumed_step_keeps_its_latest_value():
    columns = {"step": [10, 20, 30, 20, 30], "loss": [3.0, 2.0, 1.0, 1.9, 0.9]}
    raw = _traces(loss_figure(columns))["total (raw)"]
    assert list(raw.x) == [10, 20, 30] and list(raw.y) == [3.0, 1.9, 0.9]


def test_a_long_run_is_thinned_but_keeps_its_ends():
    n = 100_000
    columns = {"step": list(range(1, n + 1)), "loss": [1.0 / i for i in range(1, n + 1)]}
    raw = _traces(loss_figure(columns))["total (raw)"]
    assert len(raw.x) <= MAX_POINTS
    assert raw.x[0] == 1 and raw.x[-1] == n and raw.y[-1] == pytest.approx(1.0 / n)


def test_a_simple_mode_run_shows_the_total_loss_only_once():
    columns = {"step": [10, 20], "loss": [3.0, 2.0], "mle_loss": [3.0, 2.0], "rank_loss": [None, None]}
    assert set(_traces(loss_figure(columns))) == {"total (raw)", "total (smoothed)"}
