"""The embedded defaults are made in $FABE_HOME on first use, once, even when asked for by
several processes at the same time."""

from __future__ import annotations

import threading

from fabe.data import builder
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


def test_embedded_data_is_built_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("FABE_HOME", str(tmp_path))
    monkeypatch.setattr(builder, "EMBEDDED_DATA", {**builder.EMBEDDED_DATA, "n": 60})
    path = builder.resolve_data("embedded")
    assert path == str(tmp_path / "data-generated")
    files = find_split_files(tmp_path / "data-generated")
    assert len(load_records(files["train"])) == 48
    assert builder.resolve_data("some/folder") == "some/folder"
