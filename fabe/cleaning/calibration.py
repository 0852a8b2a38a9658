"""Weights that carry information: a temperature for the K candidates' softmax, fitted on a
validation split and stored with the model.

The scores are mean token log-likelihoods; at T = 1 the K weights of a cleaner that copies
well differ by hundredths (about 1/K each), so the front-door average and a reviewer learn
nothing from them. Temperature scaling (Guo et al., ICML 2017) picks the T that maximizes the
likelihood of the candidates that restore the clean function, over the records where one
does, so that a candidate's weight tracks how often candidates like it are right. The
report gives the expected calibration error (ECE, 10 bins) of the top weight against the top
candidate's exactness before and after, and the mean top weight of exact and wrong tops.
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


def fit_temperature(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]]) -> float:
    """The T maximizing sum over records with a correct candidate of log(sum of the correct
    candidates' weights); 1.0 when no record has one."""
    s, c = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    useful = c.any(axis=1)
    if not useful.any():
        return 1.0
    s, c = s[useful], c[useful]
    nll = [-np.log((_weights(s, t) * c).sum(axis=1) + 1e-12).sum() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def ece(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| x share."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return float(total)


def report(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], temperature: float) -> dict:
    """Calibration of the top weight at T = 1 and at `temperature`."""
    s, c = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    top = s.argmax(axis=1)
    right = c[np.arange(len(s)), top]
    out: dict = {"temperature": round(temperature, 6), "records": len(s), "top_exact": round(float(right.mean()), 4)}
    for name, t in (("t1", 1.0), ("fitted", temperature)):
        w = _weights(s, t)[np.arange(len(s)), top]
        out[f"ece_{name}"] = round(ece(w, right), 4)
        out[f"top_weight_exact_{name}"] = round(float(w[right].mean()), 4) if right.any() else None
        out[f"top_weight_wrong_{name}"] = round(float(w[~right].mean()), 4) if (~right).any() else None
    return out

