"""Plotly figures of a run's metrics: losses (raw and smoothed), eval loss, learning rate.

They take the columns of `fabe.rundir.MetricsFollower`. A long run logs hundreds of thousands
of points; each trace is thinned to at most `MAX_POINTS` (smoothing is computed before
thinning, on every point), so the page stays fast however long the run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

LOSSES = (("loss", "total"), ("mle_loss", "MLE"), ("rank_loss", "ranking"))
MAX_POINTS = 2000
LAYOUT = dict(xaxis_title="step", height=340, margin=dict(l=40, r=10, t=40, b=40))


def _smoothed(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    return pd.Series(values).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def thin(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `max_points` evenly spread points out of `n`, the last one included."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _line(x: np.ndarray, y: np.ndarray, **kwargs) -> dict:
    """A thinned scatter trace of plain lists (not plotly's base64 arrays), readable from the
    page's DOM."""
    keep = thin(len(x))
    return dict(type="scatter", x=x[keep].tolist(), y=y[keep].tolist(), **kwargs)


def _figure(traces: list[dict], title: str) -> go.Figure:
    """Built without plotly's per-point validation, which costs more than the rest of a refresh;
    the traces are made here from floats and ints only."""
    return go.Figure(data=traces, layout=dict(title=title, **LAYOUT), _validate=False)


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
    fig = _figure(traces, "Loss")
    fig.update_yaxes(type="log")  # losses span orders of magnitude over a run
    return fig


def lr_figure(columns: dict[str, list]) -> go.Figure:
    steps, values = _series(columns, "learning_rate")
    return _figure([_line(steps, values, name="learning rate", mode="lines")] if len(values) else [],
                   "Learning rate")


COMPARED = ("trigger_removal", "exact", "codebleu", "bleu", "parse", "false_change", "top_weight")


def compare_figure(results: dict[str, dict], metrics: tuple[str, ...] = COMPARED) -> go.Figure:
    """One bar group per metric, one bar per evaluation (e.g. simple vs full mode)."""
    traces = [dict(type="bar", name=name, x=list(metrics),
                   y=[r["overall"].get(m) for m in metrics]) for name, r in results.items()]
    fig = go.Figure(data=traces, layout=dict(title="Top candidate, overall", barmode="group", height=360,
                                             yaxis=dict(range=[0, 1]), margin=dict(l=40, r=10, t=40, b=40)),
                    _validate=False)
    return fig


def by_trigger_figure(results: dict[str, dict], metric: str = "exact") -> go.Figure:
    """`metric` per trigger kind, one bar per evaluation."""
    kinds = sorted({k for r in results.values() for k in r["by_trigger"]})
    traces = [dict(type="bar", name=name, x=kinds, y=[r["by_trigger"].get(k, {}).get(metric) for k in kinds])
              for name, r in results.items()]
    return go.Figure(data=traces, layout=dict(title=f"{metric} by trigger kind", barmode="group", height=360,
                                              margin=dict(l=40, r=10, t=40, b=40)), _validate=False)


def defense_figure(defenses: dict[str, dict]) -> go.Figure:
    """ASR (solid) and clean accuracy (hatched) per defense, per trigger kind for ASR."""
    kinds = sorted({k for r in defenses.values() for k in r["by_trigger"]})
    traces = [dict(type="bar", name=f"{name} ASR", x=["all", *kinds],
                   y=[r["overall"]["asr"], *[r["by_trigger"].get(k, {}).get("asr") for k in kinds]])
              for name, r in defenses.items()]
    traces += [dict(type="bar", name=f"{name} CA", x=["clean accuracy"], y=[r["overall"]["ca"]],
                    marker=dict(pattern=dict(shape="/")))
               for name, r in defenses.items()]
    return go.Figure(data=traces, layout=dict(title="Attack success rate (lower is better) and clean accuracy",
                                              barmode="group", height=380, yaxis=dict(range=[0, 1]),
                                              margin=dict(l=40, r=10, t=40, b=40)), _validate=False)
