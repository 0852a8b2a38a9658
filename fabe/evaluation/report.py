"""Results for people: the tables and charts of saved evaluations (`eval.json`) and defense
results (`defense.json`), shown by the page and exported for a paper (Markdown, LaTeX, PNG,
CSV) by `python -m fabe export --eval DIR | --defense DIR`.

One number format everywhere: a rate as a percentage with one decimal, its 95% Wilson
interval and the count it is over (`50.0% [23.7, 76.3] n=10`); a rate over no record reads
"no samples", never 0. In the charts a rate of 0 is drawn as a thin bar labelled "0.0%"
(plotly draws nothing for a bar of height 0), and a kind without samples as no bar with the
label "no samples"; the interval is the error bar.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go

from fabe.files import write_atomic, write_text_atomic

EVAL_RATES = {"trigger_removal": "trigger removal", "exact": "exact", "parse": "parse",
              "false_change": "false change", "clean_in_k": "clean in K"}
EVAL_SCORES = {"codebleu": "CodeBLEU", "bleu": "BLEU", "top_weight": "top weight"}  # means in [0, 1], no count
DEFENSE_RATES = {"asr": "ASR", "ca": "clean accuracy"}
FORMATS = ("md", "tex", "png", "csv")
ZERO_BAR = 0.01  # height drawn for a rate of 0, so that the bar is seen (its label and hover say 0.0%)
MARGIN = dict(l=60, r=10, t=50, b=50)


def _one_decimal(share: float) -> str:
    """100 x `share` with one decimal, halves rounded up as written (0.0945 -> 9.5, where
    binary floats would give 9.4)."""
    return str((Decimal(str(share)) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def percent(value: float | None) -> str:
    return "" if value is None else f"{_one_decimal(value)}%"


def rate_cell(rates: dict, key: str) -> str:
    """`50.0% [23.7, 76.3] n=10`, or "no samples" when the rate is over no record."""
    n = rates.get(f"{key}_n")
    if not n or rates.get(key) is None:
        return "no samples"
    low, high = rates[f"{key}_ci"]
    return f"{percent(rates[key])} [{_one_decimal(low)}, {_one_decimal(high)}] n={n}"


def load_result(folder: str | Path, name: str) -> dict:
    """`folder/name` (eval.json or defense.json) read, or a ValueError naming the file."""
    path = Path(folder) / name
    if not path.is_file():
        raise ValueError(f"{path}: no such file (give a folder that holds {name})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file: {e}") from None


def _eval_scopes(result: dict) -> list[tuple[str, dict]]:
    """(label, rates) for all records, each trigger kind and each project."""
    if "overall" not in result or "by_trigger" not in result:
        raise ValueError("eval.json: no 'overall' or 'by_trigger' field; not an evaluation saved by `fabe eval`")
    return [("all", result["overall"]), *result["by_trigger"].items(),
            *((f"project {p}", r) for p, r in result.get("by_project", {}).items())]


def _eval_row(rates: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"records": int(rates.get("records", 0))}
    row.update({label: rate_cell(rates, key) for key, label in EVAL_RATES.items()})
    row.update({label: percent(rates.get(key)) for key, label in EVAL_SCORES.items()})
    lines = rates.get("lines_changed")
    row["lines changed"] = "" if lines is None else f"{lines:.1f}"
    return row


def eval_table(result: dict) -> pd.DataFrame:
    """One evaluation: a row for all records, each trigger kind and each project."""
    return pd.DataFrame([{"scope": label, **_eval_row(rates)} for label, rates in _eval_scopes(result)])


def _ranking_cells(ranking: dict | None) -> dict[str, str]:
    """The ranking columns of a comparison row (empty but for the "all" row)."""
    if not ranking or not ranking.get("ranked_records"):
        return {"ranking: pairwise": "", "ranking: best first": "", "ranking: tau-b": ""}
    tau = ranking.get("kendall_tau")
    return {"ranking: pairwise": rate_cell(ranking, "pairwise_accuracy"),
            "ranking: best first": rate_cell(ranking, "best_top"),
            "ranking: tau-b": "" if tau is None else f"{tau:.3f}"}


def compare_table(results: dict[str, dict]) -> pd.DataFrame:
    """Several evaluations side by side: for each, a row for all records (with its seconds
    per record), then one per trigger kind and project."""
    rows = []
    for name, result in results.items():
        s = result.get("meta", {}).get("s_per_record")
        for label, rates in _eval_scopes(result):
            seconds = "" if s is None or label != "all" else f"{s:.2f}"
            rows.append({"evaluation": name, "scope": label, **_eval_row(rates), "s/record": seconds,
                         **_ranking_cells(result.get("ranking") if label == "all" else None)})
    columns = ["evaluation", "scope", *_eval_row({}), "s/record", *_ranking_cells(None)]  # named when none is chosen
    return pd.DataFrame(rows, columns=columns)


def _defense_scopes(result: dict) -> list[tuple[str, str, dict]]:
    if "defenses" not in result:
        raise ValueError("defense.json: no 'defenses' field; not a result saved by `fabe defend`")
    return [(name, scope, rates) for name, r in result["defenses"].items()
            for scope, rates in [("all", r["overall"]), *r["by_trigger"].items()]]


def defense_table(result: dict, overall_only: bool = False) -> pd.DataFrame:
    """ASR and CA per defense (and per trigger kind, for ASR), with seconds per sample."""
    rows = []
    for name, scope, rates in _defense_scopes(result):
        if overall_only and scope != "all":
            continue
        s = rates.get("s_per_sample")
        rows.append({"defense": name, "trigger kind": scope, "ASR": rate_cell(rates, "asr"),
                     "clean accuracy": rate_cell(rates, "ca") if scope == "all" else "",
                     "s/sample": "" if s is None else f"{s:.3f}"})
    return pd.DataFrame(rows, columns=["defense", "trigger kind", "ASR", "clean accuracy", "s/sample"])


def attack_order(kinds: set[str]) -> list[tuple[str, str]]:
    """(kind, group) of `kinds`: the classic kinds first, then the adaptive ones, in the
    trigger builder's order; a kind the builder does not know last, as "other"."""
    from fabe.data.triggers import ADAPTIVE_KINDS, TRIGGER_KINDS

    known = [(k, "classic") for k in TRIGGER_KINDS] + [(k, "adaptive") for k in ADAPTIVE_KINDS]
    return [(k, g) for k, g in known if k in kinds] + [(k, "other") for k in sorted(kinds - {k for k, _ in known})]


def attack_matrix(result: dict) -> pd.DataFrame:
    """The paper's table: one row per attack (trigger kind), one column per defense, each cell
    the ASR with its 95% interval and count; then all poisoned records, the clean accuracy of
    each defense and its change from no defense in points."""
    _defense_scopes(result)  # a file without defenses is refused, named
    defenses = result["defenses"]
    kinds = {k for r in defenses.values() for k in r["by_trigger"]}
    rows = [{"attack": kind, "group": group,
             **{name: rate_cell(r["by_trigger"].get(kind, {}), "asr") for name, r in defenses.items()}}
            for kind, group in attack_order(kinds)]
    rows.append({"attack": "all poisoned", "group": "ASR",
                 **{name: rate_cell(r["overall"], "asr") for name, r in defenses.items()}})
    rows.append({"attack": "clean accuracy", "group": "CA",
                 **{name: rate_cell(r["overall"], "ca") for name, r in defenses.items()}})
    base = (defenses.get("none") or {}).get("overall", {}).get("ca")

    def change(r: dict) -> str:  # blank without `none` or without labelled unpoisoned records
        ca = r["overall"].get("ca")
        return "" if ca is None or base is None else f"{100 * (ca - base):+.1f}"
    rows.append({"attack": "CA change (points)", "group": "CA", **{n: change(r) for n, r in defenses.items()}})
    return pd.DataFrame(rows, columns=["attack", "group", *defenses])


def family_matrix(results: dict[str, dict]) -> pd.DataFrame:
    """The paper's table over a family of victims, one attack each (as attacks are published):
    each victim's attack rows, then its clean accuracy and CA change, the victim's name in
    the `group` column (every victim defended with the same defenses)."""
    frames = [attack_matrix(result).query("attack != 'all poisoned'").assign(group=victim)
              for victim, result in results.items()]
    return pd.concat(frames, ignore_index=True)


def detection_table(result: dict) -> pd.DataFrame:
    """One row per detection method: recall and false-positive rate of poisoned-sample
    detection (with intervals and counts), precision, AUROC, and what was published."""
    published = result.get("published") or {}
    rows = []
    for name, m in result["methods"].items():
        r = m["report"]
        auroc = r.get("auroc")
        pub = published.get(name) or {}
        rows.append({"method": name, "recall": rate_cell(r, "recall"), "FPR": rate_cell(r, "fpr"),
                     "precision": rate_cell(r, "precision"), "AUROC": "" if auroc is None else f"{auroc:.3f}",
                     "published": f"recall {percent(pub['recall'])}, FPR {percent(pub['fpr'])}" if pub else ""})
    return pd.DataFrame(rows, columns=["method", "recall", "FPR", "precision", "AUROC", "published"])


def detection_by_attack(result: dict) -> pd.DataFrame:
    """Recall of each detection method (columns) on each attack's poisoned samples (rows)."""
    methods = result["methods"]
    kinds = {k for m in methods.values() for k in m["report"]["by_trigger"]}
    rows = [{"attack": kind, "group": group,
             **{name: rate_cell(m["report"]["by_trigger"].get(kind, {}), "recall") for name, m in methods.items()}}
            for kind, group in attack_order(kinds)]
    return pd.DataFrame(rows, columns=["attack", "group", *methods])


def ranking_line(ranking: dict) -> str:
    """How the cleaner ranks the dataset's own candidates, as a sentence."""
    if not ranking.get("ranked_records"):
        return "Ranking: no record with differently scored candidates."
    tau = ranking.get("kendall_tau")
    return (f"Ranking of the dataset's candidates ({ranking['ranked_records']} records): pairwise accuracy "
            f"{rate_cell(ranking, 'pairwise_accuracy')}, Kendall tau-b {'-' if tau is None else f'{tau:.3f}'}, "
            f"best-scored candidate ranked first {rate_cell(ranking, 'best_top')}.")


def victim_line(victim: dict, who: str = "Victim before any defense") -> str:
    """A victim's own held-out measure as a sentence (victim.json's `held_out` or `unpoisoned`),
    each rate with its interval and count where recorded."""
    if not victim:
        return ""
    def cell(rates: dict, key: str) -> str:  # older victim.json files hold the rates alone
        return rate_cell(rates, key) if rates.get(f"{key}_n") else (percent(rates.get(key)) or "not measured")

    asr, asr_n, asr_ci = victim.get("asr") or {}, victim.get("asr_n") or {}, victim.get("asr_ci") or {}
    kinds = ", ".join(f"{kind} {cell({'asr': v, 'asr_n': asr_n.get(kind), 'asr_ci': asr_ci.get(kind)}, 'asr')}"
                      for kind, v in asr.items()) or "not measured"
    n = victim.get("functions")
    on = f" on {int(n):,} held-out functions" if n else ""
    floor = (f"; untriggered, {cell(victim, 'clean_to_target')} of the non-target functions already go to the "
             f"target" if victim.get("clean_to_target_n") else "")
    return (f"{who} (its own measure{on}): clean accuracy {cell(victim, 'clean_accuracy')}{floor}; "
            f"attack success rate by trigger kind: {kinds}.")


def _long_rows(scopes: list[tuple[str, dict]], keys: dict[str, str], extra: dict[str, str]) -> list[dict]:
    rows = []
    for scope, rates in scopes:
        for key in keys:
            ci = rates.get(f"{key}_ci") or [None, None]
            rows.append({**extra, "scope": scope, "metric": key, "rate": rates.get(key), "n": rates.get(f"{key}_n"),
                         "ci_low": ci[0], "ci_high": ci[1]})
    return rows


def summary_frame(result: dict) -> pd.DataFrame:
    """Every rate of an evaluation or a defense result as numbers, one row per scope and
    rate (scope, metric, rate, n, ci_low, ci_high; and defense for a defense result): what
    `summary.csv` holds, for a spreadsheet or a plotting script."""
    if "defenses" in result:
        rows = []
        for name, r in result["defenses"].items():
            rows += _long_rows([("all", r["overall"])], DEFENSE_RATES, {"defense": name})
            rows += _long_rows(list(r["by_trigger"].items()), {"asr": "ASR"}, {"defense": name})
        return pd.DataFrame(rows)
    return pd.DataFrame(_long_rows(_eval_scopes(result), EVAL_RATES, {}))


def write_summary_csv(folder: str | Path, result: dict) -> Path:
    """`folder/summary.csv` (`summary_frame`), written atomically."""
    path = Path(folder) / "summary.csv"
    write_atomic(path, lambda f: summary_frame(result).to_csv(f, index=False), newline="")
    return path


def _bar(name: str, labels: list[str], cells: list[tuple[dict | None, str]], **kwargs) -> go.Bar:
    """A bar trace over `labels`, bar i showing rate `key` of `rates` for (rates, key) =
    `cells[i]`, labelled with its rate; a rate of 0 drawn at ZERO_BAR, a scope without
    samples as no bar labelled "no samples"; the Wilson interval as the error bar; the true
    rate, interval and count in the hover."""
    shown, text, up, down, hover = [], [], [], [], []
    for rates, key in cells:
        value = None if rates is None else rates.get(key)
        if value is None or not rates.get(f"{key}_n"):
            shown.append(0.0), text.append("no samples"), up.append(0.0), down.append(0.0)
            hover.append("no samples")
            continue
        y = max(value, ZERO_BAR)
        low, high = rates[f"{key}_ci"]
        shown.append(y), text.append(percent(value)), up.append(max(high - y, 0.0)), down.append(max(y - low, 0.0))
        hover.append(rate_cell(rates, key))
    return go.Bar(name=name, x=labels, y=shown, text=text, textposition="outside", cliponaxis=False,
                  hovertext=hover, hoverinfo="x+name+text",
                  error_y=dict(type="data", array=up, arrayminus=down, symmetric=False, thickness=1), **kwargs)


def _figure(traces: list, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    return go.Figure(data=traces, layout=go.Layout(
        title=dict(text=title), xaxis=dict(title=dict(text=x_title)), height=height, margin=MARGIN,
        yaxis=dict(title=dict(text=y_title), range=[0, 1.12], tickformat=".0%"), barmode="group"))


def compare_figure(results: dict[str, dict], metrics: tuple[str, ...] = tuple(EVAL_RATES)) -> go.Figure:
    """One bar group per rate, one bar per evaluation (e.g. simple vs full mode)."""
    labels = [EVAL_RATES[m] for m in metrics]
    traces = [_bar(name, labels, [(r["overall"], m) for m in metrics]) for name, r in results.items()]
    return _figure(traces, "Top candidate, overall (95% Wilson intervals)", "metric", "rate")


def by_trigger_figure(results: dict[str, dict], metric: str = "exact") -> go.Figure:
    """`metric` per trigger kind, one bar per evaluation; a kind an evaluation has no record
    of is labelled "no samples" for it."""
    kinds = sorted({k for r in results.values() for k in r["by_trigger"]})
    traces = [_bar(name, kinds, [(r["by_trigger"].get(k), metric) for k in kinds]) for name, r in results.items()]
    label = EVAL_RATES.get(metric, metric)
    return _figure(traces, f"{label} by trigger kind", "trigger kind", label)


def eval_figure(result: dict) -> go.Figure:
    """One evaluation for a paper: exact restoration and trigger removal for all records and
    per trigger kind."""
    scopes = [("all", result["overall"]), *sorted(result["by_trigger"].items())]
    labels = [s for s, _ in scopes]
    traces = [_bar(label, labels, [(r, key) for _, r in scopes]) for key, label in
              (("exact", "exact restoration"), ("trigger_removal", "trigger removal"))]
    return _figure(traces, "Top candidate by trigger kind (95% Wilson intervals)", "trigger kind", "rate")


def defense_figure(defenses: dict[str, dict]) -> go.Figure:
    """ASR (solid) per defense, for all records and per trigger kind, and clean accuracy
    (hatched)."""
    kinds = sorted({k for r in defenses.values() for k in r["by_trigger"]})
    labels = ["all", *kinds]
    traces = [_bar(f"{name} ASR", labels, [(r["overall"], "asr"), *[(r["by_trigger"].get(k), "asr") for k in kinds]])
              for name, r in defenses.items()]
    traces += [_bar(f"{name} CA", ["clean accuracy"], [(r["overall"], "ca")], marker=dict(pattern=dict(shape="/")))
               for name, r in defenses.items()]
    return _figure(traces, "Attack success rate (lower is better) and clean accuracy", "trigger kind", "rate")


def attack_figure(defenses: dict[str, dict]) -> go.Figure:
    """ASR per attack (rows) and defense (columns) as a heatmap, each cell labelled with its
    rate and count (the interval in the hover); an attack a defense has no record of is blank."""
    kinds = [k for k, _ in attack_order({k for r in defenses.values() for k in r["by_trigger"]})]
    names = list(defenses)
    cells = [[defenses[n]["by_trigger"].get(k) or {} for n in names] for k in kinds]
    z = [[c.get("asr") if c.get("asr_n") else None for c in row] for row in cells]
    text = [[f"{percent(c['asr'])}<br>n={c['asr_n']}" if c.get("asr_n") else "no samples" for c in row]
            for row in cells]
    hover = [[f"{k} under {n}: {rate_cell(c, 'asr')}" for n, c in zip(names, row)] for k, row in zip(kinds, cells)]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=kinds, text=text, texttemplate="%{text}", hovertext=hover,
                               hoverinfo="text", zmin=0, zmax=1, colorscale="Reds",
                               colorbar=dict(title=dict(text="ASR"), tickformat=".0%")))
    fig.update_layout(title=dict(text="Attack success rate by attack and defense (lower is better)"),
                      xaxis=dict(title=dict(text="defense"), side="top"), margin=MARGIN,
                      yaxis=dict(title=dict(text="attack"), autorange="reversed"), height=max(300, 60 + 34 * len(kinds)))
    return fig


def figure_png(fig: go.Figure, width: int = 900, height: int = 500) -> bytes:
    """The figure as PNG through plotly's own export (kaleido, which drives a Chrome or
    Chromium: found on PATH as `chromium`, `google-chrome`..., or at $BROWSER_PATH)."""
    try:
        return fig.to_image(format="png", width=width, height=height, scale=2)
    except (ImportError, ValueError, RuntimeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise RuntimeError(f"PNG export needs plotly's kaleido and a Chrome or Chromium (Debian: apt-get install "
                           f"chromium; or set BROWSER_PATH): {why}") from None


def _write_bytes(path: Path, data: bytes) -> None:
    """Bytes written beside `path` and renamed over it (like `fabe.files.write_atomic`)."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tex_escape(text: str) -> str:
    for char in "&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def _latex(table: pd.DataFrame, caption: str) -> str:
    """A LaTeX table (pandas' Styler: cells escaped; needs jinja2)."""
    return table.to_latex(index=False, escape=True, caption=_tex_escape(caption), position="t")


def export_result(folder: str | Path, fmt: str, out: str | Path) -> Path:
    """The saved evaluation or defense result in `folder` as a Markdown table (`md`), a LaTeX
    table (`tex`), a PNG chart (`png`) or its rates as numbers (`csv`), written to `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format: {fmt}. Should be one of {list(FORMATS)}")
    folder, out = Path(folder), Path(out)
    kind = "defense" if (folder / "defense.json").is_file() else "eval"
    result = load_result(folder, f"{kind}.json")
    table, figure, caption = _views(kind, result, folder)
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: no such folder for the export")
    if fmt == "png":
        _write_bytes(out, figure_png(figure()))
    elif fmt == "csv":
        write_atomic(out, lambda f: summary_frame(result).to_csv(f, index=False), newline="")
    else:
        write_text_atomic(out, table.to_markdown(index=False) + "\n" if fmt == "md" else _latex(table, caption))
    return out


def source_label(source: str) -> str:
    """A cleaner's name for a caption: its run for a run's final model, run and checkpoint
    for a checkpoint, else the folder's name."""
    path = Path(source)
    if path.name == "final":
        return path.parent.name
    return f"{path.parent.name} {path.name}" if path.name.startswith("checkpoint-") else path.name


def _views(kind: str, result: dict, folder: Path) -> tuple[pd.DataFrame, Callable[[], go.Figure], str]:
    """(table, figure maker, caption) of a result."""
    meta = result.get("meta", {})
    if kind == "defense":
        caption = (f"Attack success rate per attack and clean accuracy under each defense on "
                   f"{meta.get('records', '?')} records of {Path(str(meta.get('data', ''))).name} (victim "
                   f"{Path(str(meta.get('victim', ''))).name}); 95% Wilson intervals and counts.")
        return attack_matrix(result), lambda: attack_figure(result["defenses"]), caption
    caption = (f"Cleaner {source_label(str(meta.get('source', folder)))} on {meta.get('records', '?')} records of "
               f"{Path(str(meta.get('data', ''))).name}; rates with 95% Wilson intervals.")
    return eval_table(result), lambda: eval_figure(result), caption


RECORD_COLUMNS = ("id", "trigger", "project", "exact", "removed", "changed", "parses", "verdict", "codebleu")
OUTCOMES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "all": lambda f: pd.Series(True, index=f.index),
    "exact": lambda f: f["exact"] == True,  # noqa: E712 (elementwise, on a column with gaps)
    "not exact": lambda f: f["exact"] != True,  # noqa: E712
    "trigger left": lambda f: f["removed"] == False,  # noqa: E712 (poisoned records only)
    "trigger removed": lambda f: f["removed"] == True,  # noqa: E712
    "false change": lambda f: f["trigger"].eq("none") & (f["changed"] == True),  # noqa: E712
}


def load_records_frame(folder: str | Path) -> pd.DataFrame:
    """An evaluation's `records.csv` as a frame (booleans as booleans, a missing project or
    verdict as an empty cell), or a ValueError naming the file and a missing column."""
    path = Path(folder) / "records.csv"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (an evaluation folder holds one)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}")
    for column in ("exact", "removed", "changed", "parses"):  # `removed` is empty for unpoisoned records
        frame[column] = frame[column].map({"True": True, "False": False, "": None}).astype(object)
    frame["codebleu"] = pd.to_numeric(frame["codebleu"], errors="coerce").round(3)
    return frame


def records_view(frame: pd.DataFrame, trigger: str = "all", outcome: str = "all") -> pd.DataFrame:
    """The records of one trigger kind ("all": every kind) with one outcome (`OUTCOMES`), in
    the columns a reader scans: id, trigger, project, exact, removed, changed, parses,
    verdict, CodeBLEU."""
    if outcome not in OUTCOMES:
        raise ValueError(f"Unknown outcome: {outcome}. Should be one of {list(OUTCOMES)}")
    keep = OUTCOMES[outcome](frame)
    if trigger != "all":
        keep &= frame["trigger"] == trigger
    return frame.loc[keep, list(RECORD_COLUMNS)].reset_index(drop=True)
