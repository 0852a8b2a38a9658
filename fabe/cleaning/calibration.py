"""Weights that carry information: a temperature for the K candidates' softmax, fitted on a
validation split and stored with the model.

The scores are mean token log-likelihoods; at T = 1 the K weights of a cleaner that copies
well differ by hundredths (about 1/K each), so the front-door average and a reviewer learn
nothing from them. Temperature scaling (Guo et al., ICML 2017) picks the T whose top
confidence best predicts whether the top candidate is right (log loss over every record,
those where no candidate is right included). The top confidence is what the Clean tab shows
on the top row: the top candidate's weight summed with its identical copies. Where all K
candidates are one and the same code, it is 1 whatever T: such records cannot be calibrated
by a temperature (the verdict's other signals speak for them). The report gives the expected
calibration error (ECE, 10 bins) of the top confidence against the top's exactness before and
after, and the mean top confidence of exact and wrong tops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEMPERATURES = np.geomspace(1e-3, 10.0, 241)  # the grid searched (a 1-D fit, robust and exact enough)


def _weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K) softmax of scores / temperature along each row."""
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_confidence(scores: np.ndarray, same: np.ndarray, temperature: float) -> np.ndarray:
    """(N,) the top candidate's weight with its identical copies' (`same[i, j]`: candidate j
    is the top candidate's code, the top itself included)."""
    return (_weights(scores, temperature) * same).sum(axis=1)


def _log_loss(confidence: np.ndarray, right: np.ndarray) -> float:
    c = np.clip(confidence, 1e-9, 1 - 1e-9)
    return float(-(right * np.log(c) + (~right) * np.log(1 - c)).sum())


def fit_temperature(scores: Sequence[Sequence[float]], same: Sequence[Sequence[bool]],
                    right: Sequence[bool]) -> float:
    """The T of the grid whose top confidence has the least log loss against the top's
    exactness; 1.0 when no T changes it (every record's candidates identical, or none)."""
    s, m, r = np.asarray(scores, dtype=float), np.asarray(same, dtype=bool), np.asarray(right, dtype=bool)
    if not len(s):
        return 1.0
    losses = np.array([_log_loss(top_confidence(s, m, t), r) for t in TEMPERATURES])
    if np.ptp(losses) < 1e-9:
        return 1.0
    return float(TEMPERATURES[int(np.argmin(losses))])


def ece(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| x share."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return float(total)


def report(scores: Sequence[Sequence[float]], same: Sequence[Sequence[bool]], right: Sequence[bool],
           temperature: float) -> dict:
    """Calibration of the top confidence at T = 1 and at `temperature`."""
    s, m, r = np.asarray(scores, dtype=float), np.asarray(same, dtype=bool), np.asarray(right, dtype=bool)
    out: dict = {"temperature": round(temperature, 6), "records": len(s), "top_exact": round(float(r.mean()), 4),
                 "all_k_identical": round(float(m.all(axis=1).mean()), 4)}
    for name, t in (("t1", 1.0), ("fitted", temperature)):
        c = top_confidence(s, m, t)
        out[f"ece_{name}"] = round(ece(c, r), 4)
        out[f"top_weight_exact_{name}"] = round(float(c[r].mean()), 4) if r.any() else None
        out[f"top_weight_wrong_{name}"] = round(float(c[~r].mean()), 4) if (~r).any() else None
    return out
