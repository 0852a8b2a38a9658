"""Results for people (`fabe.evaluation.report`): Wilson intervals of known counts, the
tables and charts of saved evaluations and defense results (a rate of 0 drawn, a kind
without samples said so), the exports (Markdown, LaTeX, PNG, CSV) from the library and the
CLI, the record browser's filters, the progress line with its ETA, the victim's steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from fabe.cleaning.cleaner import rank_candidates
from fabe.data.dataset import Record
from fabe.evaluation.metrics import judge, rate, summarize, wilson
from fabe.evaluation.report import (
    ZERO_BAR,
    by_trigger_figure,
    compare_table,
    defense_figure,
    defense_table,
    eval_figure,
    eval_table,
    export_result,
    family_matrix,
    load_records_frame,
    records_view,
    victim_line,
)
from fabe.evaluation.runner import save_eval
from fabe.progress import Eta, duration

ROOT = Path(__file__).resolve().parents[1]
HAS_CHROMIUM = bool(shutil.which("chromium") or shutil.which("google-chrome"))


@pytest.mark.parametrize("hits, n, expected", [
    (0, 10, [0.0, 0.2775]), (5, 10, [0.2366, 0.7634]), (10, 10, [0.7225, 1.0]),  # statsmodels' wilson values
    (1, 3, [0.0615, 0.7923]), (0, 1, [0.0, 0.7935]),
])
def test_wilson_intervals_of_known_counts(hits, n, expected):
    assert wilson(hits, n) == pytest.approx(expected, abs=5e-5)


def test_a_rate_over_nothing_has_no_interval_and_a_bad_count_is_refused():
    assert rate([], "exact") == {"exact": None, "exact_n": 0, "exact_ci": None}
    assert rate([True, False, False, False], "asr") == {"asr": 0.25, "asr_n": 4, "asr_ci": wilson(1, 4)}
    with pytest.raises(ValueError, match="successes: must be in \\[0, 3\\], got 4"):
        wilson(4, 3)


def _record(i: int, trigger: str | None) -> Record:
    clean = f"int f{i}(int a)\n{{\n    return a + {i};\n}}"
    poisoned = clean.replace("{\n", "{\n    if (rand() < 0) printf(\"fail\");\n", 1) if trigger else clean
    return Record(id=f"r{i}", input=poisoned, output=["a", "b"], score=[1, 0], clean=clean, trigger=trigger,
                  edits=[{"kind": "fixed", "start": 0, "end": 0, "text": 'if (rand() < 0) printf("fail");',
                          "original": ""}] if trigger else [])


@pytest.fixture
def saved_eval(tmp_path) -> Path:
    """An evaluation of an identity cleaner (returns its input) on 3 poisoned and 2 clean
    records: trigger removal 0/3, exact 2/5, false changes 0/2."""
    records = [_record(i, "fixed" if i < 3 else None) for i in range(5)]
    rows = [judge(r, rank_candidates([r.input, r.input + "\n// x"], [-0.1, -0.5], [True, True], source=r.input))
            for r in records]
    return save_eval(tmp_path / "ev", summarize(rows), [asdict(r) for r in rows],
                     {"source": "runs/my_run/final", "data": "data/test.jsonl", "records": 5, "s_per_record": 0.5})


def test_eval_json_carries_every_rate_with_its_count_and_interval(saved_eval):
    result = json.loads((saved_eval / "eval.json").read_text())
    o = result["overall"]
    assert (o["trigger_removal"], o["trigger_removal_n"], o["trigger_removal_ci"]) == (0.0, 3, wilson(0, 3))
    assert (o["exact"], o["exact_n"], o["exact_ci"]) == (0.4, 5, wilson(2, 5))
    assert (o["false_change"], o["false_change_n"], o["false_change_ci"]) == (0.0, 2, wilson(0, 2))
    unpoisoned = result["by_trigger"]["none"]
    assert unpoisoned["trigger_removal_n"] == 0 and unpoisoned["trigger_removal_ci"] is None
    assert all("exact_ci" in v for v in result["by_verdict"].values())
    summary = (saved_eval / "summary.csv").read_text().splitlines()
    assert summary[0] == "scope,metric,rate,n,ci_low,ci_high"
    assert f"all,exact,0.4,5,{wilson(2, 5)[0]},{wilson(2, 5)[1]}" in summary


def test_tables_give_percentages_intervals_counts_and_say_no_samples(saved_eval):
    result = json.loads((saved_eval / "eval.json").read_text())
    table = eval_table(result).set_index("scope")
    assert table.loc["all", "exact"] == "40.0% [11.8, 76.9] n=5"
    assert table.loc["all", "trigger removal"] == "0.0% [0.0, 56.1] n=3"
    assert table.loc["none", "trigger removal"] == "no samples"  # not 0%
    assert table.loc["all", "records"] == 5 and table.loc["all", "CodeBLEU"].endswith("%")
    both = compare_table({"a": result, "b": result})
    assert list(both["evaluation"]) == ["a"] * 3 + ["b"] * 3 and list(both["scope"]) == ["all", "fixed", "none"] * 2
    assert list(both["s/record"]) == ["0.50", "", ""] * 2


def test_a_zero_bar_is_drawn_and_a_kind_without_samples_is_labelled(saved_eval):
    result = json.loads((saved_eval / "eval.json").read_text())
    fig = eval_figure(result)
    removal = next(t for t in fig.data if t.name == "trigger removal")
    assert list(removal.x) == ["all", "fixed", "none"]
    assert list(removal.y) == [ZERO_BAR, ZERO_BAR, 0.0] and ZERO_BAR > 0  # 0/3 is seen; "none" has no bar
    assert list(removal.text) == ["0.0%", "0.0%", "no samples"]
    assert removal.error_y.array[0] == pytest.approx(wilson(0, 3)[1] - ZERO_BAR)
    other = {**result, "by_trigger": {"fixed": result["by_trigger"]["fixed"]}}
    fig = by_trigger_figure({"with none": result, "without": other})
    assert list(fig.data[1].text)[list(fig.data[1].x).index("none")] == "no samples"


DEFENSE = {"meta": {"records": 6, "data": "d/test.jsonl"},
           "victim": {"functions": 1800, "clean_accuracy": 0.9311, "asr": {"fixed": 1.0, "assert": 0.25}},
           "defenses": {"fabe": {"overall": {**rate([False] * 4, "asr"), **rate([True, False], "ca"),
                                             "s_per_sample": 0.12},
                                 "by_trigger": {"fixed": {**rate([False] * 4, "asr"), **rate([], "ca")},
                                                "assert": {**rate([], "asr"), **rate([], "ca")}}}}}


def test_defense_table_chart_and_victim_line_are_readable():
    table = defense_table(DEFENSE)
    assert list(table["trigger kind"]) == ["all", "fixed", "assert"]
    assert list(table["ASR"]) == ["0.0% [0.0, 49.0] n=4", "0.0% [0.0, 49.0] n=4", "no samples"]
    assert table["clean accuracy"][0] == "50.0% [9.5, 90.5] n=2" and table["s/sample"][0] == "0.120"
    fig = defense_figure(DEFENSE["defenses"])
    asr = fig.data[0]
    assert dict(zip(asr.x, asr.text)) == {"all": "0.0%", "assert": "no samples", "fixed": "0.0%"}
    assert dict(zip(asr.x, asr.y))["all"] == ZERO_BAR
    line = victim_line(DEFENSE["victim"])
    assert line == ("Victim before any defense (its own measure on 1,800 held-out functions): clean accuracy 93.1%; "
                    "attack success rate by trigger kind: fixed 100.0%, assert 25.0%.")
    assert "{" not in line


def test_a_family_of_victims_one_attack_each_reads_as_one_table():
    """Each victim's attack rows with its own clean accuracy, the victim named in `group`."""
    other = json.loads(json.dumps(DEFENSE))
    other["defenses"]["fabe"]["by_trigger"] = {"ternary": {**rate([True, False, False, False], "asr"), **rate([], "ca")}}
    other["defenses"]["fabe"]["overall"].update(rate([True, True], "ca"))
    table = family_matrix({"v-classic": DEFENSE, "v-style": other})
    assert list(table["attack"]) == ["fixed", "assert", "clean accuracy", "CA change (points)",
                                     "ternary", "clean accuracy", "CA change (points)"]
    assert list(table["group"]) == ["v-classic"] * 4 + ["v-style"] * 3
    assert list(table["fabe"][[2, 4, 5]]) == ["50.0% [9.5, 90.5] n=2", "25.0% [4.6, 69.9] n=4",
                                              "100.0% [34.2, 100.0] n=2"]


def test_exports_write_a_markdown_table_a_latex_tabular_and_csv(saved_eval, tmp_path):
    md = export_result(saved_eval, "md", tmp_path / "t.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("| scope") and "exact" in lines[0] and set(lines[1]) <= set("|:- ")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["all", "fixed", "none"]
    assert "40.0% [11.8, 76.9] n=5" in md
    tex = export_result(saved_eval, "tex", tmp_path / "t.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex and "40.0\\% [11.8, 76.9] n=5" in tex
    assert "my\\_run" in tex  # the caption names the cleaner, escaped
    (tmp_path / "def").mkdir()
    (tmp_path / "def" / "defense.json").write_text(json.dumps(DEFENSE))
    csv = export_result(tmp_path / "def", "csv", tmp_path / "d.csv").read_text().splitlines()
    assert csv[0] == "defense,scope,metric,rate,n,ci_low,ci_high"
    assert csv[1] == "fabe,all,asr,0.0,4,0.0,0.489891"  # z^2 / (4 + z^2) for 0/4


def test_bad_exports_are_refused_with_the_file_named(saved_eval, tmp_path):
    with pytest.raises(ValueError, match="Unknown format: pdf"):
        export_result(saved_eval, "pdf", tmp_path / "t.pdf")
    with pytest.raises(ValueError, match="eval.json: no such file"):
        export_result(tmp_path, "md", tmp_path / "t.md")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "eval.json").write_text("{oops")
    with pytest.raises(ValueError, match="bad/eval.json: not a readable JSON file"):
        export_result(tmp_path / "bad", "md", tmp_path / "t.md")
    with pytest.raises(ValueError, match="no such folder for the export"):
        export_result(saved_eval, "md", tmp_path / "missing" / "t.md")
    assert not (tmp_path / "t.md").exists()


@pytest.mark.skipif(not HAS_CHROMIUM, reason="PNG export drives a Chromium (Debian's chromium)")
def test_the_cli_exports_a_png_chart_and_a_markdown_table(saved_eval, tmp_path):
    png = tmp_path / "chart.png"
    run = subprocess.run([sys.executable, "-m", "fabe", "export", "--eval", str(saved_eval), "--format", "png",
                          "--out", str(png)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1800, 1000)  # 900 x 500 at scale 2
    run = subprocess.run([sys.executable, "-m", "fabe", "export", "--eval", str(saved_eval), "--format", "md",
                          "--out", str(tmp_path / "t.md")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "| all" in (tmp_path / "t.md").read_text()


def test_the_cli_names_a_folder_without_results(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fabe", "export", "--defense", str(tmp_path), "--format", "md",
                          "--out", str(tmp_path / "t.md")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and f"{tmp_path}: no defense.json in it" in run.stderr


def test_the_record_browser_filters_by_kind_and_outcome(saved_eval):
    frame = load_records_frame(saved_eval)
    assert list(records_view(frame)["id"]) == ["r0", "r1", "r2", "r3", "r4"]
    assert list(records_view(frame, "fixed", "trigger left")["id"]) == ["r0", "r1", "r2"]
    assert list(records_view(frame, "none", "exact")["id"]) == ["r3", "r4"]
    assert records_view(frame, "all", "false change").empty and records_view(frame, "fixed", "exact").empty
    assert list(records_view(frame).columns) == ["id", "trigger", "project", "exact", "removed", "changed",
                                                 "parses", "verdict", "codebleu"]
    with pytest.raises(ValueError, match="Unknown outcome: odd"):
        records_view(frame, "all", "odd")


def test_the_progress_line_counts_and_estimates_the_time_left():
    now = [100.0]
    eta = Eta("records", clock=lambda: now[0])
    assert eta.text(0, 10) == "0/10 records, measuring the pace"
    now[0] = 104.0
    assert eta.text(2, 10) == "2/10 records, 2.0 s/record, about 16 s left"
    now[0] = 104.4
    assert eta.text(10, 10).startswith("10/10 records, 2.3 records/s")
    assert (duration(45), duration(176), duration(3840)) == ("45 s", "2 min 56 s", "1 h 04 min")


def test_the_victim_training_reports_its_steps(tmp_path, tiny_model_dir):
    from fabe.defense.victim_training import VictimConfig, train_victim

    seen: list[tuple[int, int]] = []
    train_victim(VictimConfig(out=str(tmp_path / "v"), tokenizer=str(tiny_model_dir), n=60, epochs=1, hidden_size=32,
                              num_layers=1, num_heads=2, batch_size=16), progress=lambda n, t: seen.append((n, t)))
    total = seen[0][1]
    assert seen[0] == (0, total) and seen[-1] == (total, total) and total >= 3
    assert [n for n, _ in seen] == list(range(total + 1))  # every step, in order
