"""The real app in headless Chromium: fill the Train form, preview, launch, watch the run's
loss chart gain points, stop it; a launch with a bad dataset shows every error and creates
no run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from helpers import free_port


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    import app

    runs_dir = tmp_path_factory.mktemp("app") / "runs"
    demo = app.build_app(runs_dir, roots=[tmp_path_factory.getbasetemp()])
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, css=app.CSS,
                        quiet=True, ssr_mode=False)
    yield f"http://127.0.0.1:{port}", runs_dir
    demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page()
        pg.goto(app_url[0])
        pg.wait_for_selector("text=Preview command", timeout=60_000)
        yield pg
        browser.close()


def fill(page, label: str, value: str) -> None:
    """Type into the box labelled `label`, or found by the CSS selector `label` ("#..."). A box in
    a tab just opened can still be mounting, which puts its first value back over what was typed:
    type again until the value stays."""
    box = page.locator(label) if label.startswith("#") else page.get_by_label(label, exact=True)
    for _ in range(10):
        box.fill(value)
        box.press("Tab")
        page.wait_for_timeout(200)
        if box.input_value() == value:
            return
    raise AssertionError(f"{label}: the box keeps {box.input_value()!r}, not {value!r}")


def table_has(page, text: str, timeout: int = 60_000) -> None:
    page.wait_for_function(f"() => (document.querySelector('#runs-table')?.innerText || '').includes('{text}')",
                           timeout=timeout)


def plot_points(page) -> int:
    return page.evaluate("""() => {
        const plot = document.querySelector('#loss-plot .js-plotly-plot');
        if (!plot || !plot.data || !plot.data.length) return 0;
        return plot.data[0].x.length; }""")


def test_launch_watch_and_stop_a_run(page, app_url, small_dataset, tiny_model_dir):
    runs_dir = app_url[1]
    fill(page, "#train-data textarea", str(small_dataset))
    fill(page, "#train-model textarea", str(tiny_model_dir))
    fill(page, "Max steps", "3000")
    fill(page, "Logging steps", "1")
    fill(page, "Eval steps", "0")
    fill(page, "Batch size", "2")
    fill(page, "Max length", "768")
    fill(page, "Run name (optional)", "browser-run")
    page.get_by_role("button", name="Preview command").click()
    page.wait_for_function("() => document.querySelector('#train-config').innerText.includes('\"max_steps\": 3000')",
                           timeout=30_000)
    command = page.locator("#train-command .cm-content").inner_text()
    page.wait_for_selector("#train-plan >> text=peak (GiB)", timeout=30_000)  # the planner's table beside it
    assert "s/step on A100" in page.locator("#train-plan").inner_text()
    assert "-m fabe train --run" in command and "browser-run" in command  # trains from its config.json
    config = page.locator("#train-config .cm-content").inner_text()
    assert str(small_dataset) in config and '"trust_remote_code": false' in config  # off unless ticked
    page.get_by_role("button", name="Launch").click()
    page.wait_for_function(  # the page then switches to the Runs tab, hiding this message
        "() => document.querySelector('#launch-message').textContent.includes('Launched')", timeout=60_000)
    table_has(page, "browser-run")
    page.wait_for_function("""() => { const p = document.querySelector('#loss-plot .js-plotly-plot');
        return p && p.data && p.data.length && p.data[0].x.length >= 2; }""", timeout=180_000)
    first = plot_points(page)
    page.wait_for_function(f"""() => document.querySelector('#loss-plot .js-plotly-plot').data[0].x.length
        > {first}""", timeout=120_000)  # the chart keeps gaining points while the run trains
    assert chart_titles(page, "loss-plot") == ["Loss", "step", "loss (log scale)"]
    assert chart_titles(page, "lr-plot") == ["Learning rate", "step", "learning rate"]
    page.get_by_role("button", name="Stop").click()
    page.wait_for_selector("#run-action >> text=Stopped", timeout=180_000)
    table_has(page, "stopped")
    assert (runs_dir / "browser-run" / "status.json").exists()


def chart_titles(page, elem_id: str) -> list[str]:
    """The title and the axis titles a chart shows in the page (Plotly draws them as SVG
    text; an untitled chart has an empty or placeholder text)."""
    page.wait_for_selector(f"#{elem_id} .gtitle", timeout=30_000)
    return page.evaluate(f"""() => ['.gtitle', '.xtitle', '.ytitle'].map(
        s => document.querySelector('#{elem_id} ' + s)?.textContent ?? '')""")


def test_a_bad_dataset_shows_every_error_and_creates_no_run(page, app_url, tmp_path):
    runs_dir = app_url[1]
    before = sorted(p.name for p in runs_dir.iterdir())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "int x;", "output": ["a"], "score": [1]}\n{oops\n')
    page.get_by_role("tab", name="Train").click()
    fill(page, "#train-data textarea", str(bad))
    fill(page, "Run name (optional)", "never")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_selector("#launch-message >> text=Cannot launch", timeout=60_000)
    text = page.locator("#launch-message").inner_text()
    assert "bad.jsonl:1: output: 1 candidate" in text and "bad.jsonl:2: json" in text
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_the_duration_estimate_says_its_figure_and_basis_beside_the_command(page, small_dataset, tiny_model_dir):
    page.get_by_role("tab", name="Train").click()
    fill(page, "#train-data textarea", str(small_dataset))
    fill(page, "#train-model textarea", str(tiny_model_dir))
    fill(page, "Max length", "768")
    fill(page, "Max steps", "40")
    page.get_by_role("button", name="Estimate duration (timed probe)").click()
    page.wait_for_selector("#train-estimate >> text=Expected duration", timeout=180_000)
    text = page.locator("#train-estimate").inner_text()
    assert "for 40 steps" in text and "timed steps at" in text and "measured on cpu" in text, text


def test_check_dataset_shows_its_stats_and_first_records(page, small_dataset):
    from fabe.data.dataset import load_records

    first, *rest = load_records(small_dataset / "train.jsonl")
    page.get_by_role("tab", name="Train").click()
    fill(page, "#train-data textarea", str(small_dataset))
    page.get_by_role("button", name="Check dataset").click()
    page.wait_for_function(f"() => document.querySelector('#dataset-preview').innerText.includes('{first.id}')",
                           timeout=60_000)
    assert "train.jsonl" in page.locator("#dataset-info").inner_text()
    shown = page.locator("#dataset-preview").inner_text()
    assert all(r.id in shown for r in rest[:4]) and rest[4].id not in shown  # the first five


def test_the_form_saves_to_yaml_and_loads_back(page, tmp_path):
    import yaml

    page.get_by_role("tab", name="Train").click()
    fill(page, "Learning rate", "0.0042")
    fill(page, "Warmup steps", "17")
    page.locator("#train-trust_remote_code input").check()
    page.get_by_role("button", name="Preview command").click()
    page.wait_for_function("() => document.querySelector('#train-config').innerText.includes('\"trust_remote_code\": true')",
                           timeout=30_000)
    page.get_by_role("button", name="Save form as YAML").click()
    link = page.locator("#form-yaml a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "form.yaml"
    download.value.save_as(saved)
    values = yaml.safe_load(saved.read_text())
    assert values["learning_rate"] == 0.0042 and values["warmup_steps"] == 17 and values["trust_remote_code"] is True
    page.locator("#train-trust_remote_code input").uncheck()
    fill(page, "Learning rate", "0.1")
    fill(page, "Warmup steps", "3")
    page.locator("#form-load input[type=file]").set_input_files(str(saved))
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Warmup steps\"]')?.value === '17'",
                           timeout=60_000)
    assert page.get_by_label("Learning rate", exact=True).input_value() == "0.0042"
    assert page.locator("#train-trust_remote_code input").is_checked()


def options_of(box):
    """The options of the dropdown whose input is `box`, only: another dropdown's list can still
    be open while this one opens."""
    return box.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' block ')][1]")


def choose(page, label: str, option: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.click()
    options_of(box).get_by_role("option", name=option, exact=True).click()


RECORD_PICKER = "Record (id · trigger · origin · lines; type to filter)"


def list_records(page) -> None:
    """Click List records and wait for the picker's count: a click on the picker before the list
    arrives opens the old, empty one."""
    page.get_by_role("button", name="List records").click()
    page.wait_for_selector("#clean-record >> text=/records listed/", timeout=60_000)


def choose_record(page, record_id: str) -> None:
    """Pick a record in the Clean tab by its id (the option's label says more: trigger, origin, lines)."""
    box = page.get_by_label(RECORD_PICKER, exact=True)
    box.click()
    options_of(box).get_by_role("option", name=re.compile(f"^{re.escape(record_id)} · ")).click()


def replace_input(page, code: str) -> None:
    """Select all of the Clean tab's input and put `code` there as a paste does (one input event)."""
    page.locator("#clean-input .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(code)


def test_clean_a_picked_record_then_pasted_code_with_a_trained_checkpoint(page, app_url, small_dataset, tiny_model_dir):
    from fabe.data.dataset import load_records
    from fabe.training.config import TrainConfig
    from fabe.training.run import train

    runs_dir = app_url[1]
    train(TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), out=str(runs_dir / "tiny-run"),
                      mode="full", max_steps=3, batch_size=2, eval_steps=0, save_steps=100, max_length=768))
    record = next(r for r in load_records(small_dataset / "test.jsonl") if r.trigger in ("dead_loop", "fixed"))
    page.get_by_role("tab", name="Clean").click()
    page.get_by_role("button", name="Refresh list").click()
    choose(page, "Cleaner (shipped, a run's final model or checkpoint, or a model folder)", "tiny-run / final")
    page.get_by_role("button", name="Load", exact=True).click()
    page.wait_for_selector("#clean-loaded >> text=Loaded", timeout=60_000)
    page.get_by_role("tab", name="Pick a dataset record").click()
    fill(page, "#clean-split textarea", str(small_dataset / "test.jsonl"))
    list_records(page)
    choose_record(page, record.id)
    page.wait_for_selector(f"#clean-record-info >> text={record.trigger}", timeout=30_000)
    fill(page, "Max new tokens (0: 1.25 x input + 16)", "12")
    page.get_by_role("button", name="Clean", exact=True).click()
    page.wait_for_selector("#clean-message >> text=4 candidates", timeout=120_000)  # K = 4 by default
    rows = int(page.locator("#candidates-table [role=grid]").get_attribute("aria-rowcount")) - 1  # less the header
    cells = [c for c in page.locator("#candidates-table").inner_text().split("\n") if c.strip()]
    body = cells[cells.index("lines changed") + 1:]
    ranks, copies = body[0::11], body[1::11]
    assert 1 <= rows <= 4 and ranks[0] == "1" and sum(map(int, copies)) == 4, body  # identical ones counted once
    assert page.locator("#clean-verdict #verdict").get_attribute("data-verdict") in ("confident", "uncertain", "failed")
    marked = page.locator(f"#clean-diff tr[data-trigger='{record.trigger}']")
    assert marked.count() >= 1
    assert marked.first.get_attribute("data-op") in ("delete", "replace")
    assert page.locator("#clean-diff mark.trigger").count() >= 1
    assert "saved by the evaluation" not in page.locator("#clean-message").inner_text()

    # the stale-highlight case: paste other code over the picked record's; the record's title,
    # trigger offsets and reference must not be applied to it
    from fabe.cleaning.report import trigger_spans

    other = next(r for r in load_records(small_dataset / "test.jsonl")
                 if r.clean and r.id != record.id and not trigger_spans(r.clean))
    replace_input(page, other.clean)
    page.wait_for_selector("#clean-record-info >> text=no dataset record", timeout=30_000)
    assert record.id not in page.locator("#clean-record-info").inner_text()
    page.get_by_role("button", name="Clean", exact=True).click()
    page.wait_for_function(f"() => document.querySelector('#clean-diff')?.innerText.includes({other.clean.split(chr(10))[0]!r})",
                           timeout=120_000)
    assert page.locator("#clean-diff mark.trigger").count() == 0  # the detector finds none in it
    assert page.locator("#clean-diff tr[data-trigger]:not([data-trigger=''])").count() == 0
    left = page.evaluate("() => [...document.querySelectorAll('#clean-diff td.left')].map(td => td.innerText)")
    assert "\n".join(line for line in left if line) .split() == other.clean.split()  # the pasted code is the input
    box = page.evaluate("""() => { const b = document.querySelector('#clean-diff .diff-box');
        return [b.scrollWidth, b.clientWidth, getComputedStyle(b).overflowY]; }""")
    assert box[0] <= box[1] + 1 and box[2] == "auto", box  # long lines wrap inside the box; it scrolls


def test_evaluate_two_checkpoints_compare_them_and_open_a_record(page, app_url, small_dataset, tiny_model_dir):
    from fabe.training.config import TrainConfig
    from fabe.training.run import train

    runs_dir = app_url[1]
    train(TrainConfig(data=str(small_dataset), model=str(tiny_model_dir), out=str(runs_dir / "two-ckpt"),
                      mode="simple", max_steps=4, batch_size=2, eval_steps=0, save_steps=2, max_length=768))
    page.get_by_role("tab", name="Evaluate").click()
    page.get_by_role("button", name="Refresh lists").click()
    page.wait_for_timeout(1000)
    for ckpt in ("checkpoint-4", "checkpoint-2"):
        choose(page, "Cleaners to evaluate", f"two-ckpt / {ckpt}")
    fill(page, "Split to evaluate on (.jsonl/.json; embedded: its test split)", str(small_dataset / "test.jsonl"))
    fill(page, "First N records (0: all)", "2")
    fill(page, "Max new tokens (0: auto)", "8")
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_selector("#eval-message >> text=Evaluated 2 cleaner(s)", timeout=180_000)
    page.wait_for_function("""() => { const p = document.querySelector('#eval-chart .js-plotly-plot');
        return p && p.data && p.data.length === 2; }""", timeout=60_000)
    names = page.evaluate("() => document.querySelector('#eval-chart .js-plotly-plot').data.map(t => t.name)")
    assert sorted(n.split("-")[-1] for n in names) == ["2", "4"], names  # both checkpoints in the chart
    table = page.locator("#eval-table").inner_text()
    assert "two-ckpt" in table and "n=2" in table and "%" in table  # rates with their interval and count
    assert chart_titles(page, "eval-chart") == ["Top candidate, overall (95% Wilson intervals)", "metric", "rate"]
    assert bars_all_seen(page, "eval-chart") and bars_all_seen(page, "eval-by-trigger")
    assert chart_titles(page, "eval-by-trigger") == ["exact by trigger kind", "trigger kind", "exact"]
    page.get_by_text("Record browser").click()
    choose(page, "Evaluation", names[0])
    page.wait_for_timeout(1000)
    first_id = page.locator("#eval-records").inner_text().split("\n")
    rec = next(line.strip() for line in first_id if line.strip().startswith("test-"))
    choose(page, "Record to open", rec)
    page.get_by_role("button", name="Open in the Clean tab").click()
    page.wait_for_selector(f"#clean-record-info >> text={rec}", timeout=30_000)
    # it lands on the record sub-tab, showing the candidates that evaluation saved
    assert page.get_by_role("tab", name="Pick a dataset record").get_attribute("aria-selected") == "true"
    page.wait_for_selector("#clean-message >> text=saved by the evaluation", timeout=30_000)
    from fabe.evaluation.runner import load_candidates

    saved = load_candidates(runs_dir / names[0], rec)
    cells = [c for c in page.locator("#candidates-table").inner_text().split("\n") if c.strip()]
    body = cells[cells.index("lines changed") + 1:]
    assert body[3] == f"{round(saved[0].score, 4):g}"  # the evaluation's top candidate, not a new decoding
    assert sum(map(int, body[1::11])) == len(saved) == 4


def test_the_defense_tab_draws_its_chart_with_its_titles(page, small_victim, small_dataset):
    page.get_by_role("tab", name="Defense").click()
    victim_box = page.locator("#defense-victim-source input")
    victim_box.fill(str(small_victim))
    victim_box.press("Enter")  # a typed folder, beside the listed victims
    fill(page, "Split (.jsonl/.json; embedded: its test split)", str(small_dataset / "test.jsonl"))
    for name in ("fabe", "top1", "naturalness", "onion"):  # no defense at all: quick, and needs no cleaner
        page.locator(f"#defense-chosen label:has-text('{name}') input").uncheck()
    page.get_by_role("button", name="Run defenses").click()
    page.wait_for_selector("#defense-message >> text=Saved to", timeout=120_000)
    assert chart_titles(page, "defense-chart") == ["Attack success rate by attack and defense (lower is better)",
                                                   "defense", "attack"]
    cells = page.evaluate("""() => document.querySelector('#defense-chart .js-plotly-plot').data[0].text.flat()""")
    assert any("n=" in c for c in cells) and all("n=" in c or c == "no samples" for c in cells), cells
    victim = page.locator("#defense-victim").inner_text()
    assert victim.startswith("Victim before any defense") and "{" not in victim, victim  # a sentence, not a dict
    assert "n=" in page.locator("#defense-table").inner_text()
    page.get_by_role("button", name="Export the result").click()  # Markdown, the default format
    link = page.locator("#defense-exported a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    md = Path(download.value.path()).read_text()
    assert md.startswith("| attack") and "| clean accuracy " in md and "| none " in md.splitlines()[0], md


def test_the_victim_form_shows_every_field_whole(page):
    """Every field of "Make a backdoored victim" lies inside the form and
    uncut at the default window: a row of eight fields once squeezed the reference checkbox to a
    block narrower than its label."""
    page.get_by_role("tab", name="Defense").click()
    form = page.locator("#victim-form")
    form.get_by_text("Make a backdoored victim").first.click()
    page.locator("#victim-reference").wait_for(state="visible", timeout=30_000)
    edge = form.bounding_box()
    for field in ("victim-name", "victim-corpus", "victim-triggers", "victim-budget", "victim-n", "victim-epochs",
                  "victim-lora", "victim-reference"):
        box = page.locator(f"#{field}").bounding_box()
        assert box["x"] >= edge["x"] and box["x"] + box["width"] <= edge["x"] + edge["width"] + 0.5, (field, box, edge)
        cut = page.evaluate(f"() => {{ const e = document.querySelector('#{field}'); "
                            "return [e.scrollWidth, e.clientWidth]; }")
        assert cut[0] <= cut[1] + 1, (field, "content wider than its block", cut)
    assert page.locator("#victim-budget input").input_value() == "2"  # the AFRAIDOOR budget's default


def bars_all_seen(page, elem_id: str) -> bool:
    """Every bar of the chart in the page has a height above 0 unless labelled "no samples"
    (a rate of 0 is drawn as a thin bar, not left out)."""
    traces = page.evaluate(f"""() => document.querySelector('#{elem_id} .js-plotly-plot').data
        .map(t => [Array.from(t.y), Array.from(t.text)])""")
    return bool(traces) and all(y > 0 or text == "no samples" for ys, texts in traces for y, text in zip(ys, texts))


def test_options_that_do_not_apply_are_hidden_and_come_back(page):
    page.get_by_role("tab", name="Train").click()

    def pick(option: str, value: str) -> None:
        page.locator(f"#train-{option} input").click()
        page.locator(f"#train-{option}").get_by_role("option", name=value, exact=True).click()

    pick("finetune", "full")
    page.wait_for_selector("#train-lora_r", state="hidden", timeout=30_000)
    assert page.locator("#train-beta").is_visible()
    pick("mode", "simple")
    page.wait_for_selector("#train-beta", state="hidden", timeout=30_000)
    assert page.locator("#train-rank_loss").is_hidden() and page.locator("#train-learning_rate").is_visible()
    pick("finetune", "lora")
    pick("mode", "full")
    page.wait_for_selector("#train-lora_r", state="visible", timeout=30_000)
    page.wait_for_selector("#train-beta", state="visible", timeout=30_000)
    assert page.locator("#train-margin").is_hidden()  # only for the margin ranking loss


def test_the_shipped_real_examples_are_offered_with_their_origin_and_a_verdict(page):
    page.get_by_role("tab", name="Clean").click()
    page.get_by_role("tab", name="Pick a dataset record").click()
    fill(page, "#clean-split textarea", "examples")
    list_records(page)
    choose_record(page, "example-0")
    page.wait_for_selector("#clean-record-info >> text=licence", timeout=30_000)
    info = page.locator("#clean-record-info").inner_text()
    assert any(p in info for p in ("libxml2", "nginx", "lua")) and "example-0" in info
    fill(page, "Max new tokens (0: 1.25 x input + 16)", "8")
    page.get_by_label("Abstain: keep the input when no candidate is trustworthy").check()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Clean", exact=True).click()  # an earlier test's result may be shown still
    page.wait_for_selector("#clean-verdict #verdict >> text=returned unchanged", timeout=120_000)
    verdict = page.locator("#clean-verdict #verdict").inner_text()
    # eight tokens cannot restore a function: failed, and the input is kept
    assert verdict.startswith("FAILED") and "returned unchanged" in verdict, verdict
