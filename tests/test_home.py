"""The embedded defaults are made in $FABE_HOME on first use, once, even when asked for by
several processes at the same time; `fabe.embedded.resolve` is the one place the name
`embedded` is turned into a path."""

from __future__ import annotations

import threading

import pytest

from fabe import embedded
from fabe.data.dataset import find_split_files, load_records
from fabe.home import made_once


def test_made_once_makes_once_under_concurrent_callers(tmp_path):
    calls = []

    def make():
        calls.append(1)
        (tmp_path / "thing").mkdir()
        (tmp_path / "thing" / "done").write_text("ok")

    threads = [threading.Thread(target=made_once, args=(tmp_path / "thing", "done", make)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and made_once(tmp_path / "thing", "done", make) == tmp_path / "thing"


def test_embedded_data_is_built_on_first_use_and_its_splits_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("FABE_HOME", str(tmp_path))
    monkeypatch.setattr(embedded, "GENERATED_DATA", {**embedded.GENERATED_DATA, "n": 60})
    path = embedded.resolve("embedded", "data")
    assert path == str(tmp_path / "data-generated")
    files = find_split_files(tmp_path / "data-generated")
    assert len(load_records(files["train"])) == 48
    assert embedded.resolve_split("embedded") == files["test"]
    assert embedded.resolve_split(tmp_path / "data-generated", "valid") == files["valid"]
    assert embedded.resolve_split(files["train"]) == files["train"]  # a file is its own split
    assert embedded.resolve("some/folder", "data") == "some/folder"


def test_other_names_pass_through_and_unknown_kinds_or_a_missing_cleaner_are_named(tmp_path, monkeypatch):
    assert embedded.resolve("owner/model", "model") == "owner/model"
    with pytest.raises(ValueError, match="Unknown embedded kind: tokenizer. Should be one of"):
        embedded.resolve("embedded", "tokenizer")
    monkeypatch.setattr(embedded, "SHIPPED_CLEANER", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no embedded cleaner yet; train one with"):
        embedded.resolve("embedded", "cleaner")
