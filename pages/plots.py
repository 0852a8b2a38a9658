"""Plotly figures of a run: its losses (raw and smoothed) and learning rate. (The charts of
evaluations and defenses are built by the library, `fabe.evaluation.report`, which exports
them as PNG too.)

Each figure has a title and titled axes. The run charts take the columns of
`fabe.rundir.MetricsFollower`; a long run logs hundreds of thousands of points, so each trace
is thinned to at most `MAX_POINTS` (smoothing is computed before thinning, on every point),
which keeps the page fast however long the run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

LOSSES = (("loss", "total"), ("mle_loss", "MLE"), ("rank_loss", "ranking"))
MAX_POINTS = 2000
MARGIN = dict(l=60, r=10, t=50, b=50)


def _smoothed(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    return pd.Series(values).ewm(alpha=alpha, adjust=False).mean().to_numpy()


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


def _series(columns: dict[str, list], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) where `column` was logged, by step; a step logged again after a resume
    keeps its latest value."""
    if column not in columns:
        return np.empty(0), np.empty(0)
    steps = np.asarray(columns["step"], dtype=float)
    values = np.asarray(columns[column], dtype=float)  # None -> nan
    logged = ~np.isnan(values)
    steps, values = steps[logged], values[logged]
    if len(steps) > 1 and not (np.diff(steps) > 0).all():
        _, last = np.unique(steps[::-1], return_index=True)  # first from the end = latest
        keep = len(steps) - 1 - last
        steps, values = steps[keep], values[keep]
    return steps.astype(int), values


def loss_figure(columns: dict[str, list]) -> go.Figure:
    traces = []
    full_mode = len(_series(columns, "rank_loss")[1]) > 0
    for column, name in LOSSES if full_mode else LOSSES[:1]:  # in simple mode MLE is the total
        steps, values = _series(columns, column)
        if len(values):
            traces.append(_line(steps, values, name=f"{name} (raw)", mode="lines", opacity=0.35))
            traces.append(_line(steps, _smoothed(values), name=f"{name} (smoothed)", mode="lines"))
    steps, values = _series(columns, "eval_loss")
    if len(values):
        traces.append(_line(steps, values, name="eval", mode="lines+markers"))
    # losses span orders of magnitude over a run
    return _figure(traces, "Loss", "step", "loss (log scale)", height=340, yaxis=dict(type="log"))


def lr_figure(columns: dict[str, list]) -> go.Figure:
    steps, values = _series(columns, "learning_rate")
    traces = [_line(steps, values, name="learning rate", mode="lines")] if len(values) else []
    return _figure(traces, "Learning rate", "step", "learning rate", height=340)
