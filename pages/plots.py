"""Plotly figures of a run's metrics: losses (raw and smoothed), eval loss, learning rate."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

LOSSES = (("loss", "total"), ("mle_loss", "MLE"), ("rank_loss", "ranking"))


def _smoothed(series: pd.Series, alpha: float = 0.1) -> list[float]:
    return series.ewm(alpha=alpha, adjust=False).mean().tolist()


def _line(x: pd.Series, y: pd.Series | list, **kwargs) -> go.Scatter:
    """A trace of plain lists (not plotly's base64 arrays), readable from the page's DOM."""
    return go.Scatter(x=list(x), y=list(y), **kwargs)


def loss_figure(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    frame = pd.DataFrame(rows)
    if not frame.empty and "loss" in frame:
        train = frame[frame["loss"].notna()]
        for column, name in LOSSES:
            if column in train and train[column].notna().any():
                part = train[train[column].notna()]
                fig.add_trace(_line(part["step"], part[column], name=f"{name} (raw)",
                                    mode="lines", opacity=0.35))
                fig.add_trace(_line(part["step"], _smoothed(part[column]),
                                    name=f"{name} (smoothed)", mode="lines"))
        if "eval_loss" in frame and frame["eval_loss"].notna().any():
            ev = frame[frame["eval_loss"].notna()]
            fig.add_trace(_line(ev["step"], ev["eval_loss"], name="eval", mode="lines+markers"))
    fig.update_layout(title="Loss", xaxis_title="step", height=340, margin=dict(l=40, r=10, t=40, b=40))
    return fig


def lr_figure(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    frame = pd.DataFrame(rows)
    if not frame.empty and "learning_rate" in frame and frame["learning_rate"].notna().any():
        part = frame[frame["learning_rate"].notna()]
        fig.add_trace(_line(part["step"], part["learning_rate"], name="learning rate", mode="lines"))
    fig.update_layout(title="Learning rate", xaxis_title="step", height=340,
                      margin=dict(l=40, r=10, t=40, b=40))
    return fig
