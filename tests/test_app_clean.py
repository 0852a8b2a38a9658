"""The Clean tab through the app's HTTP API (gradio_client): an input longer than the
model's window gives the message and no candidates (nothing truncated silently); empty
input is refused; a normal input gives K ranked candidates."""

from __future__ import annotations


import pytest

from helpers import free_port


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import app
    from gradio_client import Client

    demo = app.build_app(tmp_path_factory.mktemp("runs"), roots=[tmp_path_factory.getbasetemp()])
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        ssr_mode=False)
    c = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield c
    c.close()
    demo.close()


def clean(client, source: str, code: str, k: int = 2, max_new: int = 6):
    message, table, *_ = client.predict(source, code, k, 0.5, "diverse_beam", max_new, api_name="/clean")
    return message, table["data"]


def test_an_over_long_input_is_refused_with_nothing_truncated(client, tiny_model_dir):
    long_code = "int f(void)\n{\n" + "    x = x + 1;\n" * 600 + "}"
    message, rows = clean(client, str(tiny_model_dir), long_code)
    assert "Input too long" in message and "window of 1024 tokens" in message
    assert rows == [] or rows == [[""] * len(rows[0])]


def test_empty_input_is_refused_and_code_is_cleaned(client, tiny_model_dir):
    message, _ = clean(client, str(tiny_model_dir), "   ")
    assert "input is empty" in message
    message, rows = clean(client, str(tiny_model_dir), "int f(int a)\n{\n    return a;\n}", k=3)
    assert message.startswith("3 candidates") and rows[0][0] == 1
    assert sum(r[1] for r in rows) == 3  # identical candidates are one row with their count


def test_the_defense_tab_runs_and_shows_every_defense(client, small_victim, tiny_model_dir, small_dataset):
    import json

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="K: give a value"):
        client.predict(str(small_victim), str(tiny_model_dir), str(small_dataset / "test.jsonl"), ["none"], 2, None,
                       api_name="/defend")
    message, _, table, chart, victim_md = client.predict(
        str(small_victim), str(tiny_model_dir), str(small_dataset / "test.jsonl"), ["fabe", "none"], 2, 2,
        api_name="/defend")
    assert message.startswith("Saved to")
    assert table["headers"] == ["attack", "group", "fabe", "none"]  # the paper's table: attacks x defenses
    attacks = [row[0] for row in table["data"]]
    assert attacks[-3:] == ["all poisoned", "clean accuracy", "CA change (points)"] and len(attacks) > 3
    heatmap = json.loads(chart["plot"])["data"][0]
    assert heatmap["x"] == ["fabe", "none"] and heatmap["y"] == attacks[:-3] and "clean accuracy" in victim_md


def test_the_defense_tab_trains_a_victim_and_offers_it(client, tmp_path_factory):
    import json
    from pathlib import Path

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Name the victim"):
        client.predict("../up", "embedded", "generated", "corpus", "fixed", 0.1, 0, 80, 1, False,
                       api_name="/train_victim")
    with pytest.raises(AppError, match="lora_rank: base 'embedded' is trained from scratch"):
        client.predict("lora-v", "embedded", "generated", "corpus", "badcode", 0.1, 0, 80, 1, False, 8,
                       api_name="/train_victim")
    with pytest.raises(AppError, match="rename_budget: must be at least 1 identifier, got 0"):
        client.predict("budget-v", "embedded", "generated", "corpus", "afraidoor", 0.1, 0, 80, 1, False, 0, 0,
                       api_name="/train_victim")
    with pytest.raises(AppError, match="Epochs: give a value"):
        client.predict("empty-v", "embedded", "generated", "corpus", "fixed", 0.1, 0, 80, None, False,
                       api_name="/train_victim")
    message, victim = client.predict("tiny-v", "embedded", "generated", "corpus", "fixed,adv_rename", 0.2, 0, 80, 1,
                                     True, api_name="/train_victim")
    assert isinstance(victim, dict) and victim["__type__"] == "update", victim  # the victim list, with it chosen
    folder = Path(victim["value"])
    names = [c[1] for c in victim["choices"]]
    assert names[:10] == ["embedded", "embedded-afraidoor", "embedded-codepoisoner", "embedded-badcode",
                          "embedded-style", "embedded-real", "embedded-real-afraidoor", "embedded-real-codepoisoner",
                          "embedded-real-badcode", "embedded-real-style"] and victim["value"] in names
    assert victim["choices"][2][0] == "embedded-codepoisoner (generated code, codepoisoner: cp_func, cp_stmt; trained on first use)"
    meta = json.loads((folder / "victim.json").read_text())
    assert folder.parent.name == "_victims" and folder.name == "tiny-v"
    assert not any((folder.parent / f"{n}-v").exists() for n in ("budget", "lora", "empty"))  # refused: nothing written
    assert meta["attack"]["triggers"] == ["fixed", "adv_rename"] and meta["attack"]["poisoned"] > 0
    assert message.startswith("Victim `tiny-v` (its own measure on 12 held-out functions): clean accuracy ")
    assert "Unpoisoned victim trained the same way" in message and "adv_rename " in message
    assert "unpoisoned" in meta and set(meta["unpoisoned"]["asr"]) == {"fixed", "adv_rename"}
    assert meta["attack"]["guide"] == "reference"  # AFRAIDOOR's crafting model: the unpoisoned victim, kept
    assert (folder / "reference" / "config.json").exists()
