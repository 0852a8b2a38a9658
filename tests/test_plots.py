"""The Runs tab's charts: every loss series with its smoothing, thinned for long runs, the
latest value of a step logged again after a resume."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("plotly")

from pages.plots import MAX_POINTS, SMOOTH_MIN, SPARSE, loss_figure, lr_figure, overlay_figure  # noqa: E402


def _traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_a_full_mode_run_shows_each_loss_raw_and_smoothed_and_eval():
    steps = [10 * i for i in range(1, SMOOTH_MIN + 1)]
    loss = [3.0 - 0.1 * i for i in range(SMOOTH_MIN)]
    columns = {"step": steps + [steps[-1]], "loss": loss + [None], "mle_loss": [v - 1 for v in loss] + [None],
               "rank_loss": [0.5] * SMOOTH_MIN + [None], "eval_loss": [None] * SMOOTH_MIN + [1.7],
               "learning_rate": [1e-3] * SMOOTH_MIN + [None]}
    traces = _traces(loss_figure(columns))
    assert set(traces) == {f"{n} ({k})" for n in ("total", "MLE", "ranking") for k in ("raw", "smoothed")} | {"eval"}
    assert list(traces["total (raw)"].x) == steps and list(traces["total (raw)"].y) == pytest.approx(loss)
    assert list(traces["total (smoothed)"].y[1:-1]) == pytest.approx(loss[1:-1])  # on a straight trend, no lag
    assert list(traces["eval"].y) == [1.7] and list(traces["eval"].x) == [steps[-1]]
    assert list(lr_figure(columns).data[0].y) == [1e-3] * SMOOTH_MIN


def test_few_points_are_drawn_with_markers_and_without_a_smoothed_curve():
    one = loss_figure({"step": [1], "loss": [2.5]})
    (trace,) = one.data  # a single point, visible as a marker
    assert trace.name == "total (raw)" and "markers" in trace.mode and list(trace.y) == [2.5]
    assert trace.opacity is None  # drawn in full, not as the faint raw line under a smoothed one
    few = _traces(loss_figure({"step": list(range(1, SMOOTH_MIN)), "loss": [1.0] * (SMOOTH_MIN - 1)}))
    assert set(few) == {"total (raw)"}
    many = _traces(loss_figure({"step": list(range(1, SPARSE + 1)), "loss": [1.0] * SPARSE}))
    assert many["total (raw)"].mode == "lines" and "total (smoothed)" in many
    assert "markers" in lr_figure({"step": [1], "learning_rate": [1e-3]}).data[0].mode


def test_the_smoothed_curve_follows_a_noisy_falling_loss_without_lagging():
    rng = np.random.default_rng(0)
    steps = np.arange(1, 41)
    trend = 7.0 - 0.03 * steps
    noisy = trend + rng.normal(0, 0.05, steps.size)
    smooth = np.array(_traces(loss_figure({"step": list(steps), "loss": list(noisy)}))["total (smoothed)"].y)
    assert np.abs(smooth - trend)[2:-2].max() < 0.06  # within the noise of the trend, also near the end
    assert np.abs(smooth - trend)[2:-2].mean() < np.abs(noisy - trend)[2:-2].mean()
    assert smooth[-1] - trend[-1] < 0.1  # an exponential average (alpha 0.1) would sit ~0.27 above here


def test_the_zoom_key_is_the_layout_uirevision():
    assert loss_figure({"step": [1], "loss": [1.0]}, uirevision="run-a").layout.uirevision == "run-a"
    assert lr_figure({}, uirevision="run-a").layout.uirevision == "run-a"
    assert overlay_figure({}, uirevision="cmp").layout.uirevision == "cmp"


def test_overlaying_runs_gives_one_legend_group_per_run_by_step_or_wall_time():
    a = {"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "grad_norm": [1.0, None, 0.5], "time": [100.0, 160.0, 220.0]}
    b = {"step": [1, 2], "loss": [2.5, 2.4], "grad_norm": [2.0, 2.0], "time": [50.0, 110.0]}
    fig = overlay_figure({"a": a, "b": b}, "grad_norm")
    assert [(t.legendgroup, list(t.x), list(t.y)) for t in fig.data] == [("a", [1, 3], [1.0, 0.5]),
                                                                          ("b", [1, 2], [2.0, 2.0])]
    timed = overlay_figure({"a": a}, "loss", x="time", log_y=True)
    assert list(timed.data[0].x) == [0.0, 1.0, 2.0] and timed.layout.yaxis.type == "log"
    assert timed.layout.xaxis.title.text.startswith("wall time")
    assert overlay_figure({"a": a}, "loss").layout.yaxis.type == "linear"
    assert overlay_figure({"a": a}, "tokens_per_s").data == ()  # not logged by this run: nothing drawn
    with pytest.raises(ValueError, match=r"Unknown metric: accuracy. Should be one of \['loss'"):
        overlay_figure({"a": a}, "accuracy")
    with pytest.raises(ValueError, match="Unknown x axis: epoch"):
        overlay_figure({"a": a}, "loss", x="epoch")


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
    n = SMOOTH_MIN
    columns = {"step": list(range(n)), "loss": [3.0] * n, "mle_loss": [3.0] * n, "rank_loss": [None] * n}
    assert set(_traces(loss_figure(columns))) == {"total (raw)", "total (smoothed)"}
