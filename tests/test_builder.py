"""Dataset building: candidate ranking, unpoisoned share, label carry-over, disjoint splits,
and the CLI writing valid files."""

from __future__ import annotations

import json
import random
import re

import pytest

from fabe.data import cparse
from fabe.data.builder import BuildConfig, build_dataset, reindent, score_of, split_functions
from fabe.data.corpus import CFunction
from fabe.data.generator import generate_functions
from fabe.data.dataset import load_records
from fabe.data.triggers import Edit, remove_edits


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    cfg = BuildConfig(out=str(out), n=300, seed=1, clean_share=0.2)
    return out, build_dataset(cfg)


def _norm(code: str) -> str:
    return re.sub(r"\s+", " ", code).strip()


def test_files_are_written_and_valid(built):
    out, splits = built
    for name, records in splits.items():
        assert load_records(out / f"{name}.jsonl") == records
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["config"]["n"] == 300 and meta["stats"]["train"]["records"] == len(splits["train"])
    assert sum(len(r) for r in splits.values()) == 300
    assert 200 <= len(splits["train"]) <= 260 and splits["valid"] and splits["test"]


def test_splits_share_no_function(built):
    _, splits = built
    seen = {name: {_norm(r.clean) for r in records} for name, records in splits.items()}
    assert not seen["train"] & seen["valid"]
    assert not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]


def test_duplicates_stay_in_one_split():
    base = generate_functions(30, seed=0)
    dupes = [CFunction(f.code.replace("\n", "\n\n"), f.name, f.idx + "b", "x") for f in base[:10]]
    parts = split_functions(base + dupes, [0.5, 0.25, 0.25], random.Random(0))
    assert sum(len(p) for p in parts.values()) == 30
    norms = [{_norm(f.code) for f in p} for p in parts.values()]
    assert not (norms[0] & norms[1]) and not (norms[0] & norms[2]) and not (norms[1] & norms[2])


def test_candidates_are_ranked_as_designed(built):
    _, splits = built
    cfg = BuildConfig(out="unused")
    for r in splits["train"]:
        assert len(r.output) == len(r.score) == 4
        ranked = r.ranked()
        assert ranked[0] == (r.clean, cfg.score_max)
        assert cparse.parses(r.clean)
        if r.trigger is None:
            assert r.input == r.clean and r.edits is None
        else:
            assert ranked[-1] == (r.input, cfg.score_min)
            assert remove_edits(r.input, [Edit.from_dict(e) for e in r.edits]) == r.clean
            assert cparse.parses(r.input)
        # the middle candidates differ from both ends
        assert all(c not in (r.clean, r.input) for c, _ in ranked[1:-1] if r.trigger)
        # the variant is semantically the clean code: same tokens up to renaming/whitespace
        assert ranked[1][1] == score_of(0.75, cfg)


def test_unpoisoned_share_and_trigger_balance(built):
    _, splits = built
    records = [r for rs in splits.values() for r in rs]
    clean = sum(r.trigger is None for r in records)
    assert 0.12 <= clean / len(records) <= 0.28
    kinds = {r.trigger for r in records if r.trigger}
    assert kinds == {"fixed", "grammar", "assert", "ident_func", "ident_var", "dead_loop", "volatile"}


def test_labels_come_from_the_corpus(built):
    _, splits = built
    assert {r.label for rs in splits.values() for r in rs} == {0, 1}


def test_same_seed_same_dataset(tmp_path):
    a = build_dataset(BuildConfig(out=str(tmp_path / "a"), n=40, seed=5, triggers="fixed,ident_var"))
    b = build_dataset(BuildConfig(out=str(tmp_path / "b"), n=40, seed=5, triggers="fixed,ident_var"))
    assert a == b
    assert {r.trigger for rs in a.values() for r in rs} <= {"fixed", "ident_var", None}
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()


def test_reindent_changes_only_leading_whitespace():
    code = generate_functions(1, seed=2)[0].code
    other = reindent(code, random.Random(1))
    assert other != code and _norm(other) == _norm(code) and cparse.parses(other)


@pytest.mark.parametrize("kwargs, field", [
    ({"split": "0.5,0.5"}, "split"), ({"split": "0.9,0.2,0.1"}, "split"),
    ({"clean_share": 1.5}, "clean_share"), ({"score_min": 0}, "score_min"),
    ({"triggers": "fixed,nope"}, "Unknown trigger kind"), ({"n": 0}, "n:"),
    ({"postfix": "a-b"}, "postfix"), ({"rename_budget": 0}, "rename_budget: must be at least 1"),
])
def test_bad_config_is_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BuildConfig(out="x", **kwargs)


def test_real_corpus_builds(tmp_path, redis_path, redis_functions):
    splits = build_dataset(BuildConfig(out=str(tmp_path), corpus=str(redis_path), n=120, seed=0))
    records = [r for rs in splits.values() for r in rs]
    assert len(records) >= 115 and all(r.label is None for r in records)
    assert all(r.clean in redis_functions for r in records)
