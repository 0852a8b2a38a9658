"""The Evaluate and Defense tabs through the app's HTTP API (gradio_client), on results saved
beforehand: the tables show every rate with its interval and count, the charts draw a rate
of 0 and label a kind without samples, the record browser filters, the victim reads as a
sentence, and the export buttons give a Markdown table, a LaTeX table and a PNG."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest

from fabe.defense.defenses import DefenseRun, defend, save_defense, summarize_defense
from fabe.evaluation.metrics import judge, summarize
from fabe.evaluation.report import ZERO_BAR
from fabe.evaluation.runner import save_eval
from helpers import served_app
from test_defense import ConstantVictim, DropNothing, EchoCleaner
from test_results_report import _record

HAS_CHROMIUM = bool(shutil.which("chromium") or shutil.which("google-chrome"))


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """The app over a runs folder holding one evaluation (an identity cleaner: trigger
    removal 0/3, exact 2/5) and one defense result (a victim that ignores its input)."""
    from fabe.cleaning.cleaner import rank_candidates

    runs = tmp_path_factory.mktemp("app") / "runs"
    records = [_record(i, "fixed" if i < 3 else None) for i in range(5)]
    rows = [judge(r, rank_candidates([r.input, r.input + "\n// x"], [-0.1, -0.5], [True, True], source=r.input))
            for r in records]
    ev = save_eval(runs / "run-a" / "evals" / "test", summarize(rows), [asdict(r) for r in rows],
                   {"source": "run-a/final", "data": "test.jsonl", "records": 5, "s_per_record": 0.25})
    labelled = [*[_record(i, "fixed") for i in range(3)], *[_record(i, None) for i in range(3, 5)]]
    for i, r in enumerate(labelled):
        r.label = 1 if i != 4 else 0
    run = DefenseRun(victim=ConstantVictim(), target=0, cleaner=EchoCleaner(), purifiers={"naturalness": DropNothing()})
    outcomes = defend(run, labelled, ["fabe", "none"])
    result = {"meta": {"records": 5, "data": "test.jsonl"},
              "victim": {"functions": 300, "clean_accuracy": 0.9, "asr": {"fixed": 0.97}},
              "defenses": summarize_defense(outcomes, 0)}
    de = save_defense(runs / "run-a" / "defense" / "test", result, outcomes)
    with served_app(runs, [tmp_path_factory.getbasetemp()]) as client:
        yield client, str(ev), str(de)


def test_the_evaluate_tab_shows_intervals_counts_and_a_visible_zero_bar(app_client):
    client, ev, _ = app_client
    table, overall, per_kind = client.predict([ev], api_name="/compare_evals")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [r["scope"] for r in rows] == ["all", "fixed", "none"]
    assert rows[0]["exact"] == "40.0% [11.8, 76.9] n=5" and rows[0]["trigger removal"] == "0.0% [0.0, 56.1] n=3"
    assert rows[2]["trigger removal"] == "no samples"
    chart = json.loads(per_kind["plot"])
    assert chart["layout"]["title"]["text"] == "exact by trigger kind"
    bars = json.loads(overall["plot"])["data"][0]
    removal = bars["x"].index("trigger removal")
    assert bars["y"][removal] == ZERO_BAR and bars["text"][removal] == "0.0%"  # 0/3 is drawn, labelled 0.0%


def test_the_record_browser_filters_by_kind_and_outcome(app_client):
    client, ev, _ = app_client
    records, _, data_of, kinds = client.predict(ev, "fixed", "trigger left", api_name="/eval_browse")
    assert [row[0] for row in records["data"]] == ["r0", "r1", "r2"] and data_of == "test.jsonl"
    assert records["headers"][:6] == ["id", "trigger", "project", "exact", "removed", "changed"]
    records, *_ = client.predict(ev, "all", "exact", api_name="/eval_browse")
    assert [row[0] for row in records["data"]] == ["r3", "r4"]


def test_the_defense_tab_reads_as_text_with_intervals(app_client):
    client, _, de = app_client
    table, chart, victim = client.predict(de, api_name="/show_defense")
    assert victim.startswith("Victim before any defense (its own measure on 300 held-out functions): clean accuracy "
                             "90.0%") and "{" not in victim
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}  # the paper's table: attacks x defenses
    assert table["headers"] == ["attack", "group", "fabe", "none"]
    assert rows["fixed"]["group"] == "classic" and rows["fixed"]["fabe"] == "0.0% [0.0, 56.1] n=3"
    assert rows["clean accuracy"]["fabe"] == "50.0% [9.5, 90.5] n=2"
    assert rows["CA change (points)"]["fabe"] == "+0.0"
    heatmap = json.loads(chart["plot"])["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["y"] == ["fixed"] and heatmap["x"] == ["fabe", "none"]
    assert heatmap["z"] == [[0.0, 0.0]] and heatmap["text"][0][0] == "0.0%<br>n=3"


def test_the_export_buttons_give_markdown_and_latex_tables(app_client):
    client, ev, de = app_client
    with open(client.predict(ev, "md", api_name="/export_eval")) as f:
        md = f.read()
    assert md.startswith("| scope") and "| all " in md and "40.0% [11.8, 76.9] n=5" in md
    with open(client.predict(de, "tex", api_name="/export_defense")) as f:
        tex = f.read()
    assert "\\begin{tabular}" in tex and "0.0\\% [0.0, 56.1] n=3" in tex


@pytest.mark.skipif(not HAS_CHROMIUM, reason="PNG export drives a Chromium (Debian's chromium)")
def test_the_export_button_gives_a_png_chart(app_client):
    client, _, de = app_client
    with open(client.predict(de, "png", api_name="/export_defense"), "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
