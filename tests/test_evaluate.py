"""Top-candidate metrics on hand-made cases (a perfect cleaner, an identity cleaner), saved
evaluations and the `eval` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabe.data.builder import BuildConfig, build_dataset
from fabe.cleaning.cleaner import rank_candidates
from fabe.evaluation.metrics import judge, summarize, trigger_removed, wilson


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    splits = build_dataset(BuildConfig(out=str(tmp_path_factory.mktemp("ev")), n=80, seed=4,
                                       clean_share=0.25))
    return [r for rs in splits.values() for r in rs]


def _as_cleaner_output(code: str):
    return rank_candidates([code, code + "\n// other"], [-0.1, -0.9], [True, True], source=code)


def test_a_perfect_cleaner_scores_one_everywhere(records):
    summary = summarize([judge(r, _as_cleaner_output(r.clean)) for r in records])
    o = summary["overall"]
    assert (o["trigger_removal"], o["exact"], o["parse"], o["false_change"]) == (1.0, 1.0, 1.0, 0.0)
    assert (o["codebleu"], o["bleu"], o["clean_in_k"]) == (1.0, 1.0, 1.0)
    assert set(summary["by_trigger"]) >= {"none", "fixed", "ident_var"}
    assert all(v["exact"] == 1.0 for v in summary["by_trigger"].values())


def test_an_identity_cleaner_removes_nothing_and_changes_nothing(records):
    summary = summarize([judge(r, _as_cleaner_output(r.input)) for r in records])
    o = summary["overall"]
    assert o["trigger_removal"] == 0.0 and o["false_change"] == 0.0
    unpoisoned = sum(r.trigger is None for r in records)
    assert o["exact"] == pytest.approx(unpoisoned / len(records), abs=1e-4)
    assert o["lines_changed"] == 0 and summary["by_trigger"]["none"]["codebleu"] == 1.0
    assert summary["by_trigger"]["dead_loop"]["codebleu"] < 1.0


def test_the_rank_of_the_clean_function_and_lines_changed():
    from fabe.data.dataset import Record

    rec = Record(id="r", input="int f(void)\n{\n    if (0) { abort(); }\n    return 1;\n}",
                 output=["a", "b"], score=[1, 0], clean="int f(void)\n{\n    return 1;\n}", trigger="fixed")
    cands = rank_candidates([rec.input, "int f(void) { return 2; }", rec.clean], [-0.1, -0.2, -0.3], [True] * 3, rec.input)
    result = judge(rec, cands)
    assert (result.exact, result.clean_rank, result.lines_changed) == (False, 3, 0)
    result = judge(rec, cands[2:] + cands[:2])
    assert (result.exact, result.clean_rank, result.lines_changed, result.codebleu) == (True, 3, 1, 1.0)


def test_saved_evaluations_are_complete_files(records, tmp_path):
    import csv
    import json
    from dataclasses import asdict

    from fabe.evaluation.runner import save_eval

    rows = [judge(r, _as_cleaner_output(r.clean)) for r in records[:5]]
    out = save_eval(tmp_path / "ev", summarize(rows), [asdict(r) for r in rows], {"source": "x"})
    saved = json.loads((out / "eval.json").read_text())
    assert saved["meta"] == {"source": "x"} and saved["overall"]["records"] == 5
    with (out / "records.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["id"] for r in table] == [r.id for r in records[:5]] and table[0]["top"] == records[0].clean
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "records.csv", "summary.csv"]


def test_partial_renaming_is_not_removal(records):
    rec = next(r for r in records if r.trigger == "ident_var" and len(r.edits) >= 2)
    from fabe.data.triggers import Edit, remove_edits

    edits = [Edit.from_dict(e) for e in rec.edits]
    half = remove_edits(rec.input, edits[:1])  # one use still carries the postfix
    assert not trigger_removed(rec, half)
    assert trigger_removed(rec, rec.clean)


RATE_FIELDS = ("trigger_removal", "exact", "parse", "false_change", "clean_in_k")
SUMMARY_FIELDS = {"records", "codebleu", "bleu", "top_weight", "lines_changed",
                  *(f"{rate}{suffix}" for rate in RATE_FIELDS for suffix in ("", "_n", "_ci"))}


def test_eval_json_fields_are_stable_and_results_are_saved(tiny_model_dir, small_dataset, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ev"
    result = subprocess.run(
        [sys.executable, "-m", "fabe", "eval", "--model", str(tiny_model_dir), "--data",
         str(small_dataset / "test.jsonl"), "--limit", "3", "--k", "2", "--max_new_tokens", "8",
         "--out", str(out), "--json"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert set(data) == {"meta", "overall", "by_trigger", "by_project", "by_verdict", "ranking", "out"}
    assert data["out"] == str(out) and data["ranking"]["ranked_records"] == 3  # the split's own candidates, ranked
    assert 0 <= data["ranking"]["pairwise_accuracy"] <= 1 and data["ranking"]["pairwise_accuracy_n"] >= 3
    assert set(data["overall"]) == SUMMARY_FIELDS and data["overall"]["records"] == 3
    assert all(set(v) == SUMMARY_FIELDS for v in data["by_trigger"].values())
    assert {"source", "data", "limit", "records", "clean", "seconds", "s_per_record"} <= set(data["meta"])
    assert data["meta"]["clean"]["k"] == 2
    saved = json.loads((out / "eval.json").read_text())
    assert saved["overall"] == data["overall"]
    assert len((out / "records.csv").read_text().splitlines()) >= 4  # header + 3 records (code spans lines)
    from fabe.data.dataset import load_records
    from fabe.evaluation.report import load_records_frame
    from fabe.evaluation.runner import load_candidates

    frame = load_records_frame(out)
    for record in load_records(small_dataset / "test.jsonl")[:3]:  # what the page shows when a record is opened
        cands = load_candidates(out, record.id)
        assert len(cands) == 2 and [c.rank for c in cands] == [1, 2]
        assert cands[0].code == frame.loc[frame["id"] == record.id, "top"].item()
    assert load_candidates(out, "no-such-record") is None and load_candidates(tmp_path, "x") is None
    o = data["overall"]
    assert o["exact_n"] == 3 and o["exact_ci"] == wilson(round(o["exact"] * 3), 3)
    assert o["trigger_removal_n"] + o["false_change_n"] == 3  # poisoned and unpoisoned records
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "scope,metric,rate,n,ci_low,ci_high" and len(summary) == 1 + 5 * (1 + len(data["by_trigger"]))


def test_evaluations_are_saved_next_to_their_run(tmp_path):
    from fabe.cleaning.cleaner import CleanConfig
    from fabe.evaluation.runner import default_eval_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text("{}")
    data = tmp_path / "gen" / "test.jsonl"
    cfg = CleanConfig(k=4)
    assert default_eval_dir(run, data, cfg, 300) == run / "evals" / "gen-test-300-diverse_beam-k4"
    assert default_eval_dir(run / "checkpoint-500", data, cfg, 0) == run / "evals" / "gen-test-diverse_beam-k4-checkpoint-500"
    assert default_eval_dir(tmp_path / "model", data, cfg, 0) == Path("evals") / "model" / "gen-test-diverse_beam-k4"
