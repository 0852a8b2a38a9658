"""The app's cleaner cache: a second Load is instant (the same object), Unload frees it,
one generation per model at a time; the list of loadable cleaners."""

from __future__ import annotations

import threading
import time

from fabe.cleaning.serving import CleanerCache, cleaner_sources

CODE = "int f(int a)\n{\n    return a + 1;\n}"


def test_a_second_load_is_the_same_cleaner_and_unload_forgets_it(tiny_model_dir):
    cache = CleanerCache()
    first = cache.load(str(tiny_model_dir))
    start = time.perf_counter()
    assert cache.load(str(tiny_model_dir)) is first and time.perf_counter() - start < 0.05
    assert cache.loaded() == [str(tiny_model_dir.resolve())]
    assert cache.unload(str(tiny_model_dir)) and cache.loaded() == []
    assert not cache.unload(str(tiny_model_dir))
    assert cache.load(str(tiny_model_dir)) is not first


def test_generations_on_one_model_take_turns(tiny_model_dir):
    cache = CleanerCache()
    inside, overlap = [], []

    def work():
        with cache.using(str(tiny_model_dir)):
            overlap.append(len(inside))
            inside.append(1)
            time.sleep(0.2)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [0, 0, 0]


def test_sources_list_runs_finals_and_checkpoints(tmp_path):
    run = tmp_path / "r1"
    (run / "final").mkdir(parents=True)
    (run / "final" / "fabe.json").write_text("{}")
    for step in (5, 10, 15):
        (run / f"checkpoint-{step}").mkdir()
    for step in (5, 10):  # checkpoint-15's save never finished: it is not offered
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (run / "status.json").write_text("{}")
    (tmp_path / "not-a-run").mkdir()
    labels = [label for label, _ in cleaner_sources(tmp_path) if not label.startswith("embedded")]
    assert labels == ["r1 / final", "r1 / checkpoint-10", "r1 / checkpoint-5"]
