"""Plotly figures of runs: a run's losses (raw and smoothed) and learning rate, and any logged
metric of several runs overlaid (by step or wall time, linear or log y). (The charts of
evaluations and defenses are built by the library, `fabe.evaluation.report`, which exports
them as PNG too.)

Each figure has a title and titled axes. The run charts take the columns of
`fabe.rundir.MetricsFollower`; a long run logs hundreds of thousands of points, so each trace
is thinned to at most `MAX_POINTS` (smoothing is computed before thinning, on every point),
which keeps the page fast however long the run. A sparse series is drawn with markers, and
`layout.uirevision` (the run or the comparison) keeps the user's zoom across refreshes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

LOSSES = (("loss", "total"), ("mle_loss", "MLE"), ("rank_loss", "ranking"))
MAX_POINTS = 2000
SPARSE = 30  # fewer points than this: drawn with markers
SMOOTH_MIN = 10  # fewer points than this: no smoothed curve
MARGIN = dict(l=60, r=10, t=50, b=50)


def smoothing_window(n: int) -> int:
    """Points averaged per smoothed point: a tenth of the series (odd, 3 to 201)."""
    return min(201, max(3, n // 10) | 1)


def _smoothed(values: np.ndarray) -> np.ndarray:
    """A centred moving average: it lies on the trend, not behind it as an exponential
    average does on a few dozen points (at the ends it averages the points there are)."""
    return pd.Series(values).rolling(smoothing_window(len(values)), center=True, min_periods=1).mean().to_numpy()


def thin(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `max_points` evenly spread points out of `n`, the last one included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _line(x: np.ndarray, y: np.ndarray, **kwargs) -> go.Scatter:
    """A thinned scatter trace of plain lists (not plotly's base64 arrays), readable from the
    page's DOM."""
    keep = thin(len(x))
    return go.Scatter(x=x[keep].tolist(), y=y[keep].tolist(), **kwargs)


def _figure(traces: list, title: str, x_title: str, y_title: str, **layout) -> go.Figure:
    return go.Figure(data=traces, layout=go.Layout(
        title=dict(text=title), xaxis=dict(title=dict(text=x_title)),
        yaxis={**layout.pop("yaxis", {}), "title": dict(text=y_title)}, margin=MARGIN, **layout))


def _rows(columns: dict[str, list], column: str) -> np.ndarray:
    """Indices of the rows where `column` was logged, in step order; a step logged again
    after a resume keeps its latest row."""
    if column not in columns or "step" not in columns:
        return np.empty(0, dtype=int)
    steps = np.asarray(columns["step"], dtype=float)
    rows = np.flatnonzero(~np.isnan(np.asarray(columns[column], dtype=float)))  # None -> nan
    if len(rows) > 1 and not (np.diff(steps[rows]) > 0).all():
        _, last = np.unique(steps[rows][::-1], return_index=True)  # first from the end = latest
        rows = rows[len(rows) - 1 - last]
    return rows


def _series(columns: dict[str, list], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) where `column` was logged, by step (see `_rows`)."""
    rows = _rows(columns, column)
    if not len(rows):
        return np.empty(0), np.empty(0)
    return np.asarray(columns["step"], dtype=float)[rows].astype(int), np.asarray(columns[column], dtype=float)[rows]


def _mode(n: int) -> str:
    """Markers while a series is sparse: a single point drawn as a line is invisible."""
    return "lines+markers" if n < SPARSE else "lines"


def _raw_and_smoothed(x: np.ndarray, y: np.ndarray, name: str, **common) -> list[go.Scatter]:
    """A series as its raw points and, from `SMOOTH_MIN` points on, its smoothed curve (on a
    few points an EWM only lags behind them, so they are drawn alone, fully visible)."""
    if len(y) < SMOOTH_MIN:
        return [_line(x, y, name=f"{name} (raw)", mode=_mode(len(y)), **common)]
    return [_line(x, y, name=f"{name} (raw)", mode=_mode(len(y)), opacity=0.35, **common),
            _line(x, _smoothed(y), name=f"{name} (smoothed)", mode="lines", **common)]


def loss_figure(columns: dict[str, list], uirevision: str | None = None) -> go.Figure:
    """Each loss of a run, raw and smoothed, and the eval loss; `uirevision` (the run id)
    keeps the user's zoom across refreshes of the same run."""
    traces = []
    full_mode = len(_series(columns, "rank_loss")[1]) > 0
    for column, name in LOSSES if full_mode else LOSSES[:1]:  # in simple mode MLE is the total
        steps, values = _series(columns, column)
        if len(values):
            traces += _raw_and_smoothed(steps, values, name)
    steps, values = _series(columns, "eval_loss")
    if len(values):
        traces.append(_line(steps, values, name="eval", mode="lines+markers"))
    # losses span orders of magnitude over a run
    return _figure(traces, "Loss", "step", "loss (log scale)", height=340, yaxis=dict(type="log"),
                   uirevision=uirevision)


def lr_figure(columns: dict[str, list], uirevision: str | None = None) -> go.Figure:
    steps, values = _series(columns, "learning_rate")
    traces = [_line(steps, values, name="learning rate", mode=_mode(len(values)))] if len(values) else []
    return _figure(traces, "Learning rate", "step", "learning rate", height=340, uirevision=uirevision)


CURVES = {"loss": "total loss", "mle_loss": "MLE loss", "rank_loss": "ranking loss", "eval_loss": "eval loss",
          "learning_rate": "learning rate", "grad_norm": "grad norm", "tokens_per_s": "tokens/s",
          "s_per_step": "s/step"}
X_AXES = {"step": "step", "time": "wall time (minutes since the first logged step)"}


def _x(columns: dict[str, list], metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of `metric`: by step, or by minutes since the run's first logged row."""
    rows = _rows(columns, metric)
    values = np.asarray(columns[metric], dtype=float)[rows] if len(rows) else np.empty(0)
    if x == "step":
        return np.asarray(columns["step"], dtype=float)[rows].astype(int) if len(rows) else np.empty(0), values
    times = np.asarray(columns.get("time", []), dtype=float)
    if not len(rows) or len(times) != len(columns["step"]):
        return np.empty(0), np.empty(0)
    return np.round((times[rows] - np.nanmin(times)) / 60, 3), values


def overlay_figure(runs: dict[str, dict[str, list]], metric: str = "loss", x: str = "step", log_y: bool = False,
                   uirevision: str | None = None) -> go.Figure:
    """`metric` of several runs in one chart (one legend group per run: raw and, on enough
    points, smoothed), against step or wall time, on a linear or log y axis."""
    if metric not in CURVES:
        raise ValueError(f"Unknown metric: {metric}. Should be one of {list(CURVES)}")
    if x not in X_AXES:
        raise ValueError(f"Unknown x axis: {x}. Should be one of {list(X_AXES)}")
    traces = []
    for run_id, columns in runs.items():
        xs, values = _x(columns, metric, x)
        if len(values):
            traces += _raw_and_smoothed(xs, values, run_id, legendgroup=run_id)
    y_title = CURVES[metric] + (" (log scale)" if log_y else "")
    return _figure(traces, f"{CURVES[metric]} of {len(runs)} run(s)", X_AXES[x], y_title, height=400,
                   yaxis=dict(type="log" if log_y else "linear"), uirevision=uirevision)
