"""Poisoned-sample detection on the data side: baselines that look for the poison in a
victim's training set, to set beside FABE (which cleans inputs at test time and never sees
the training set).

Methods (`DETECTORS`):

- `killbadcode` (Sun et al., "Show Me Your Code! Kill Code Poisoning: A Lightweight Method
  Based on Code Naturalness", ICSE 2025). A trigram model of clean code
  (`fabe.data.ngram.NgramLM`) judges how much more natural each training sample gets when
  all occurrences of one of its token types are deleted: the drop of the sample's total
  negative log-likelihood per deleted occurrence (computed from the trigram windows the
  deletion touches only: 300 samples and 100 calibration functions take 0.7 s). Identifiers
  are also tried without each of their `_piece` suffixes (key `*_rb`: `len_rb` -> `len`), so
  an identifier-postfix trigger, which makes a different token in every sample, is one key.
  (A renamed function name stays unseen: every generated function's name is new to the
  language model, with or without `_rb`, so `ident_func` triggers are not found this way.)
  KillBadCode's key step follows: the improvements are aggregated over the whole training
  set (each sample adds its `top_k` most improving keys' gains to those keys), so what makes
  many samples more natural stands out as a trigger, while a token only one sample finds odd
  does not. A sample's score is the aggregate of its most suspicious key, less the sample's
  own share of it (leave-one-out: without that, every clean sample holding a token the
  language model has not seen would score its own gain); AUROC is computed on it. As
  KillBadCode removes the samples holding its trigger tokens, the flagged samples are those
  holding a trigger key; the trigger keys are taken from the 5 most suspicious down, each
  unless it would make more than `fpr` (default 10%, the operating point KillBadCode
  publishes) of clean code flagged: every third clean reference function is held out of the
  language model and is the clean code counted. (A
  threshold on the score instead fell on a tie on real C: over 10% of clean functions hold
  `++`, the most suspicious key, and nothing scored above it.)
- `spectral` (Tran, Li & Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018).
  Per class, the victim's representations are centred; a sample's outlier score is its
  squared projection on the top right singular vector, and the `1.5 * eps * n` highest of
  the class's `n` are removed, `eps` being an upper bound of the poison rate (default 0.1).
  So it always flags 15% of every class, poisoned or not.
- `activation_clustering` (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks
  by Activation Clustering", 2018). Per class, the representations are reduced to 10
  dimensions with ICA (the paper's choice) and split in two by k-means; the smaller cluster
  is flagged when it holds less than `size_threshold` (0.35, the paper's relative-size rule)
  of the class. The silhouette of the split is recorded beside it. (ICA gives components
  of unit variance, so a planted cluster only 6 standard deviations off a Gaussian blob
  was missed in 2 of 10 synthetic seeds, k-means halving the blob instead; at 8, never.)

Spectral signatures and activation clustering run on every class, as published (the
defender does not know the target); `classes` narrows them to given labels. The
representation is the victim's last-layer hidden state where its classification head reads it:
the first position of a BERT-like encoder, the last non-padding token of a decoder classifier
(`representations`).

Published numbers to compare with: KillBadCode reports 100% recall at about 10% FPR on its
benchmarks (`PUBLISHED`). Spectral signatures and activation clustering were published on
images, without numbers on code to hold these to.

`run_detection` reads a victim folder's `train.jsonl` (its poisoned training set: one
`{"code", "label", "poisoned", "trigger"}` object a line), runs the chosen methods and
writes `detection.json`: per method its parameters, seconds, details (thresholds, the most
suspicious tokens, cluster sizes), the lines it flags and its report (`detection_report`:
recall and false-positive rate with counts and 95% Wilson intervals, precision, recall per
trigger kind and AUROC).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabe.data import jsonio
from fabe.data.jsonio import UNPARSED, json_type
from fabe.data.ngram import BOS, EOS, NgramLM, code_tokens
from fabe.files import write_json_atomic
from fabe.registry import Registry

Progress = Callable[[int, int], None]

PUBLISHED = {"killbadcode": {"recall": 1.0, "fpr": 0.1,
                             "source": "Sun et al., ICSE 2025: 100% recall at about 10% FPR on their benchmarks"}}
MIN_REFERENCE = 30  # clean reference functions KillBadCode needs (a third calibrates its trigger tokens)

_IDENT = re.compile(r"[A-Za-z_]\w*\Z")
_PIECE = re.compile(r"(?<=[A-Za-z0-9])_[A-Za-z0-9]+")  # `_size`, `_rb` in `buf_size_rb`


@dataclass
class Detection:
    """What one method says about a training set: per sample whether it is flagged and how
    suspicious it is (higher: more), the parameters it ran with and what it found."""

    flagged: list[bool]
    scores: list[float]
    params: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- KillBadCode


def split_reference(clean_reference: Sequence[str]) -> tuple[list[str], list[str]]:
    """(language-model code, calibration code): every third function calibrates."""
    ref = list(clean_reference)
    return [c for i, c in enumerate(ref) if i % 3], ref[::3]


def _edit_gain(lm: NgramLM, toks: list[str], logp: list[float], edits: dict[int, str | None]) -> float:
    """NLL(toks) - NLL(toks edited), where `edits` maps positions to a new token (None:
    deleted); only the terms whose trigram window holds an edited position are recomputed."""
    deleted = {p for p, t in edits.items() if t is None}
    new = {p: t for p, t in edits.items() if t is not None}
    gain = -sum(logp[p] for p in deleted)
    touched = {j for p in edits for j in (p, p + 1, p + 2) if j < len(toks) and j not in deleted}
    for j in touched:
        i1 = j - 1
        while i1 in deleted:
            i1 -= 1
        i2 = i1 - 1
        while i2 in deleted:
            i2 -= 1
        gain += lm.logprob(new.get(i2, toks[i2]), new.get(i1, toks[i1]), new.get(j, toks[j])) - logp[j]
    return gain


def deletion_gains(lm: NgramLM, code: str) -> dict[str, float]:
    """Per key (a token type, or `*_piece` for an identifier suffix), the drop of `code`'s
    NLL when every occurrence is deleted, per occurrence (positive: more natural without).

    Per occurrence, not in total (which favours frequent tokens) nor as the change of the
    mean NLL: measured on generated functions (6 trigger kinds x 3 seeds, 10% poison),
    AUROC 0.87-1.0 per occurrence, 0.58-1.0 for the mean, 0.53-1.0 for the total."""
    toks = [BOS, BOS, *code_tokens(code), EOS]
    logp = [0.0, 0.0] + [lm.logprob(toks[j - 2], toks[j - 1], toks[j]) for j in range(2, len(toks))]
    where: dict[str, list[int]] = defaultdict(list)
    for j in range(2, len(toks) - 1):
        where[toks[j]].append(j)
    gains = {t: _edit_gain(lm, toks, logp, dict.fromkeys(ps)) / len(ps) for t, ps in where.items()}
    pieces: dict[str, dict[int, str]] = defaultdict(dict)
    for t, ps in where.items():
        if _IDENT.match(t):
            for m in _PIECE.finditer(t):
                pieces["*" + m.group()].update(dict.fromkeys(ps, t[:m.start()] + t[m.end():]))
    for key, edits in pieces.items():
        gains[key] = _edit_gain(lm, toks, logp, edits) / len(edits)
    return gains


def killbadcode(codes: Sequence[str], clean_reference: Sequence[str], fpr: float = 0.1, top_k: int = 5,
                progress: Progress | None = None) -> Detection:
    """KillBadCode-style detection (module docstring). `top_k` 5: on generated functions
    dead-loop triggers rank best so (mean AUROC over 3 seeds 0.93, against 0.90 at 3 and 0.75
    at 10); five other kinds rank at 1.0 with each."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr: must be in (0, 1), got {fpr}")
    if top_k < 1:
        raise ValueError(f"top_k: must be at least 1, got {top_k}")
    if len(clean_reference) < MIN_REFERENCE:
        raise ValueError(f"clean_reference: at least {MIN_REFERENCE} clean functions, got {len(clean_reference)}")
    fit, calibration = split_reference(clean_reference)
    lm = NgramLM().fit(fit)
    total = len(codes) + len(calibration)
    gains = []
    for i, code in enumerate([*codes, *calibration]):
        if progress is not None and i % 25 == 0:
            progress(i, total)
        gains.append(deletion_gains(lm, code))
    if progress is not None:
        progress(total, total)
    train, held = gains[:len(codes)], gains[len(codes):]
    suspicion: dict[str, float] = defaultdict(float)
    holders: dict[str, int] = defaultdict(int)
    own = []
    for g in train:
        mine = {t: g[t] for t in sorted(g, key=g.get, reverse=True)[:top_k] if g[t] > 0}
        own.append(mine)
        for t, v in mine.items():
            suspicion[t] += v
            holders[t] += 1
    scores = [max((suspicion.get(t, 0.0) - o.get(t, 0.0) for t in g), default=0.0) for g, o in zip(train, own)]
    ranked = sorted(suspicion, key=suspicion.get, reverse=True)
    triggers, skipped = trigger_tokens(ranked[:CANDIDATES], [set(g) for g in held], fpr)
    flagged = [any(t in g for t in triggers) for g in train]
    return Detection(flagged, scores, {"fpr": fpr, "top_k": top_k}, {
        "trigger_tokens": triggers, "too_common": skipped, "lm_functions": len(fit),
        "calibration_functions": len(calibration),
        "suspicious_tokens": [{"token": t, "score": round(suspicion[t], 3), "samples": holders[t]} for t in ranked[:10]]})


CANDIDATES = 5  # most suspicious keys KillBadCode may take as triggers (as many as top_k)


def trigger_tokens(ranked: Sequence[str], reference_keys: Sequence[set[str]], fpr: float) -> tuple[list[str], list[str]]:
    """(trigger keys, keys skipped as too common): from the most suspicious down, each key is
    taken unless the share of clean reference functions holding a taken key (`reference_keys`:
    each one's keys) would then exceed `fpr`. A clean token that many samples find odd (`++`
    in real C) is skipped instead of ending the search, as a score threshold would."""
    covered = np.zeros(len(reference_keys), dtype=bool)
    taken: list[str] = []
    skipped: list[str] = []
    for t in ranked:
        hit = covered | np.array([t in keys for keys in reference_keys], dtype=bool)
        if hit.mean() <= fpr:
            covered = hit
            taken.append(t)
        else:
            skipped.append(t)
    return taken, skipped


# ---------------------------------------------------------------- on representations


def _class_indices(labels: Sequence[int], classes: Sequence[int] | None) -> dict[int, np.ndarray]:
    labels = np.asarray(labels)
    chosen = sorted(set(labels.tolist())) if classes is None else list(classes)
    return {int(c): np.flatnonzero(labels == c) for c in chosen}


def _check_features(features: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features: expected one row per label ({len(labels)}, dim), got shape {features.shape}")
    return features


def spectral_signature(features: np.ndarray, labels: Sequence[int], eps: float = 0.1,
                       classes: Sequence[int] | None = None) -> Detection:
    """Spectral signatures (module docstring). Scores are divided by their class's removal
    threshold, so they compare across classes (flagged: at least 1)."""
    if not 0 < eps <= 0.5:
        raise ValueError(f"eps: an upper bound of the poison rate in (0, 0.5], got {eps}")
    features = _check_features(features, labels)
    flagged, scores = [False] * len(labels), [0.0] * len(labels)
    per_class = {}
    for c, idx in _class_indices(labels, classes).items():
        if len(idx) < 2:
            per_class[c] = {"samples": len(idx), "removed": 0}
            continue
        centred = features[idx] - features[idx].mean(0)
        top = np.linalg.svd(centred, full_matrices=False)[2][0]
        outlier = (centred @ top) ** 2
        removed = min(len(idx), math.ceil(1.5 * eps * len(idx) - 1e-9))  # rounded up (0.15 * 300: 45)
        order = np.argsort(-outlier, kind="stable")
        cut = max(float(outlier[order[removed - 1]]), 1e-12)
        for rank, k in enumerate(order):
            flagged[idx[k]] = rank < removed
            scores[idx[k]] = float(outlier[k] / cut)
        per_class[c] = {"samples": len(idx), "removed": removed}
    return Detection(flagged, scores, {"eps": eps, "classes": classes}, {"per_class": per_class})


def activation_clustering(features: np.ndarray, labels: Sequence[int], size_threshold: float = 0.35,
                          dims: int = 10, classes: Sequence[int] | None = None, seed: int = 0) -> Detection:
    """Activation clustering (module docstring). A sample's score is 1 - the share of its
    class in its cluster, so members of a small cluster score high."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    if not 0 < size_threshold <= 0.5:
        raise ValueError(f"size_threshold: a share of the class in (0, 0.5], got {size_threshold}")
    if dims < 1:
        raise ValueError(f"dims: must be at least 1, got {dims}")
    features = _check_features(features, labels)
    flagged, scores = [False] * len(labels), [0.0] * len(labels)
    per_class = {}
    for c, idx in _class_indices(labels, classes).items():
        if len(idx) < 4:  # too few to reduce and split
            per_class[c] = {"samples": len(idx), "flagged": 0}
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            reduced = FastICA(n_components=min(dims, features.shape[1], len(idx) - 1), whiten="unit-variance",
                              max_iter=1000, random_state=seed).fit_transform(features[idx])
        cluster = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        sizes = np.bincount(cluster, minlength=2)
        small = int(sizes.argmin())
        share = float(sizes[small] / len(idx))
        poisoned = share < size_threshold
        for k, member in zip(idx, cluster):
            flagged[k] = bool(poisoned and member == small)
            scores[k] = float(1 - sizes[member] / len(idx))
        per_class[c] = {"samples": len(idx), "smaller_share": round(share, 4),
                        "flagged": int(sizes[small]) if poisoned else 0,
                        "silhouette": round(float(silhouette_score(reduced, cluster)), 4) if sizes.min() else None,
                        "ica_converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}
    return Detection(flagged, scores, {"size_threshold": size_threshold, "dims": dims, "classes": classes,
                                       "seed": seed}, {"per_class": per_class})


def representations(victim: Any, codes: Sequence[str], batch_size: int = 32,
                    progress: Progress | None = None) -> np.ndarray:
    """(N, hidden) float32: the victim's last-layer hidden state where its classification head
    reads it: the first position of an encoder (BERT's [CLS]), the last non-padding token of a
    decoder (a `*ForSequenceClassification` of a causal LM, whose head is `score`); inputs cut
    to the model's window as `Victim.logits` does."""
    import torch

    limit = min(victim.tokenizer.model_max_length, victim.model.config.max_position_embeddings)
    decoder = hasattr(victim.model, "score")
    out = []
    with torch.no_grad():
        for start in range(0, len(codes), batch_size):
            if progress is not None:
                progress(start, len(codes))
            enc = victim.tokenizer(list(codes[start:start + batch_size]), truncation=True, max_length=limit,
                                   padding=True, return_tensors="pt").to(victim.device)
            enc.pop("token_type_ids", None)
            hidden = victim.model(**enc, output_hidden_states=True).hidden_states[-1]
            if decoder:  # the position transformers' decoder classifiers pool: the last non-padding token
                mask = enc["input_ids"] != victim.model.config.pad_token_id
                last = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(-1)
                hidden = hidden[torch.arange(len(hidden), device=hidden.device), last]
            else:
                hidden = hidden[:, 0]
            out.append(hidden.float().cpu().numpy())
    if progress is not None:
        progress(len(codes), len(codes))
    return np.concatenate(out) if out else np.empty((0, victim.model.config.hidden_size), np.float32)


# ---------------------------------------------------------------- report


def detection_report(flagged: Sequence[bool], poisoned: Sequence[bool], kinds: Sequence[str | None],
                     scores: Sequence[float] | None = None) -> dict:
    """Recall (over poisoned samples) and false-positive rate (over clean ones), each with
    its count and 95% Wilson interval; precision (over flagged ones); recall per trigger
    kind (`kinds`: each sample's trigger kind, None for clean ones); AUROC of `scores`
    (None without both poisoned and clean samples)."""
    from sklearn.metrics import roc_auc_score

    from fabe.evaluation.metrics import rate

    if not len(flagged) == len(poisoned) == len(kinds) or (scores is not None and len(scores) != len(flagged)):
        raise ValueError("flagged, poisoned, kinds and scores: must have one entry per sample")
    rows = list(zip(map(bool, flagged), map(bool, poisoned), kinds))
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for f, p, kind in rows:
        if p:
            by_kind[kind or "unknown"].append(f)
    both = any(p for _, p, _ in rows) and not all(p for _, p, _ in rows)
    return {**rate([f for f, p, _ in rows if p], "recall"), **rate([f for f, p, _ in rows if not p], "fpr"),
            **rate([p for f, p, _ in rows if f], "precision"), "flagged": sum(f for f, _, _ in rows),
            "samples": len(rows), "by_trigger": {k: rate(v, "recall") for k, v in sorted(by_kind.items())},
            "auroc": round(float(roc_auc_score([p for _, p, _ in rows], list(scores))), 4)
            if scores is not None and both else None}


# ---------------------------------------------------------------- a victim's training set


class TrainingSetError(jsonio.InputError):
    """A victim's train.jsonl that cannot be read; each problem as `FILE:LINE: field: ...`."""


@dataclass
class TrainingSet:
    """A victim's poisoned training set: per sample its code, (possibly flipped) label,
    whether it is poisoned, its trigger kind (None for clean ones) and its line in the file."""

    codes: list[str]
    labels: list[int]
    poisoned: list[bool]
    triggers: list[str | None]
    lines: list[int]


def _sample_problems(obj: Any) -> list[jsonio.Problem]:
    if not isinstance(obj, dict):
        return [("line", f"expected a JSON object, got {json_type(obj)}")]
    found: list[jsonio.Problem] = []
    checks = {"code": (lambda v: isinstance(v, str), "a string"),
              "label": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
              "poisoned": (lambda v: isinstance(v, bool), "true or false"),
              "trigger": (lambda v: v is None or isinstance(v, str), "a trigger kind or null")}
    for name, (ok, what) in checks.items():
        if name not in obj:
            found.append((name, "missing"))
        elif not ok(obj[name]):
            found.append((name, f"expected {what}, got {json_type(obj[name])}"))
    if not found and obj["trigger"] is not None and not obj["poisoned"]:
        found.append(("trigger", f"a clean sample (poisoned false) has no trigger, got {obj['trigger']!r}"))
    return found


def read_training_set(path: str | Path) -> TrainingSet:
    """The samples of a train.jsonl, all or nothing: TrainingSetError names the file, line
    and field of every problem."""
    path = Path(path)
    if not path.is_file():
        raise TrainingSetError(f"{path}: no such file (the victim's poisoned training set)")
    problems = jsonio.Problems(str(path), keep=jsonio.MAX_SHOWN)
    out = TrainingSet([], [], [], [], [])
    for line, obj, found in jsonio.iter_jsonl(path):
        if obj is not UNPARSED:
            found = found + _sample_problems(obj)
            if not found:
                out.codes.append(obj["code"])
                out.labels.append(obj["label"])
                out.poisoned.append(obj["poisoned"])
                out.triggers.append(obj["trigger"])
                out.lines.append(line)
        problems.extend(line, found)
    problems.raise_if_any(TrainingSetError)
    if not out.codes:
        raise TrainingSetError(f"{path}: code: the file holds no samples")
    return out


# ---------------------------------------------------------------- running the methods


@dataclass
class DetectionInputs:
    """What the methods read: the training set, clean reference code and the victim's
    representations of the training samples (None when no chosen method needs them)."""

    codes: list[str]
    labels: list[int]
    clean_reference: list[str]
    features: np.ndarray | None


@dataclass(frozen=True)
class Detector:
    """`detect(inputs, progress, **params)`; `needs_representations`: it reads the victim's."""

    detect: Callable[..., Detection]
    needs_representations: bool


DETECTORS: Registry[Detector] = Registry("detection method", {
    "killbadcode": Detector(lambda x, progress, **p: killbadcode(x.codes, x.clean_reference, progress=progress, **p),
                            needs_representations=False),
    "spectral": Detector(lambda x, progress, **p: spectral_signature(x.features, x.labels, **p),
                         needs_representations=True),
    "activation_clustering": Detector(lambda x, progress, **p: activation_clustering(x.features, x.labels, **p),
                                      needs_representations=True),
})


def run_detection(victim_dir: str | Path, methods: Sequence[str], clean_reference: Sequence[str],
                  out: str | Path | None = None, limit: int = 0, progress: Progress | None = None,
                  params: dict[str, dict[str, Any]] | None = None) -> tuple[dict, Path]:
    """Run `methods` on the victim folder's train.jsonl (its first `limit` samples; 0: all)
    and write `detection.json` to `out` (default `victim_dir/detection/`). `params` gives
    per method keyword arguments of its function (e.g. {"spectral": {"eps": 0.05}}).
    The victim's representations are computed once (their seconds: `representations`)."""
    from fabe.defense.victims import Victim

    methods = DETECTORS.check(list(methods))
    params = params or {}
    unknown = set(params) - set(methods)
    if unknown:
        raise ValueError(f"params: for methods not chosen: {sorted(unknown)}")
    victim_dir = Path(victim_dir)
    train = read_training_set(victim_dir / "train.jsonl")
    n = min(limit, len(train.codes)) if limit > 0 else len(train.codes)
    codes, labels = train.codes[:n], train.labels[:n]
    victim = Victim.load(victim_dir)
    result: dict[str, Any] = {
        "victim": str(victim_dir), "train": str(victim_dir / "train.jsonl"), "samples": n,
        "poisoned": sum(train.poisoned[:n]), "target_label": victim.target_label, "limit": limit,
        "clean_reference": len(clean_reference), "published": PUBLISHED, "methods": {}}
    needs = any(DETECTORS[m].needs_representations for m in methods)
    kbc = len(split_reference(clean_reference)[1]) + n if "killbadcode" in methods else 0
    total, done = (n if needs else 0) + kbc, 0

    def phase(d: int, t: int) -> None:
        if progress is not None:
            progress(done + d, total)

    features = None
    if needs:
        start = time.perf_counter()
        features = representations(victim, codes, progress=phase)
        result["representations"] = {"dim": int(features.shape[1]), "seconds": round(time.perf_counter() - start, 3)}
        done += n
    inputs = DetectionInputs(codes, labels, list(clean_reference), features)
    for name in methods:
        start = time.perf_counter()
        found = DETECTORS[name].detect(inputs, phase, **params.get(name, {}))
        seconds = time.perf_counter() - start
        if name == "killbadcode":
            done += kbc
        result["methods"][name] = {
            "params": found.params, "seconds": round(seconds, 3), "details": found.details,
            "report": detection_report(found.flagged, train.poisoned[:n], train.triggers[:n], found.scores),
            "flagged_lines": [line for line, f in zip(train.lines, found.flagged) if f]}
    folder = Path(out) if out is not None else victim_dir / "detection"
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "detection.json", result)
    return result, folder
