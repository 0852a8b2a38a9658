"""The Runs page in headless Chromium, as a researcher keeps it open: two runs overlaid in
one chart with the options that differ, a zoom that survives the live refresh (and a log box
that shows its newest lines), a reload
that keeps the selected run (`?run=ID`), Stop showing the step of the checkpoint it saved
(and Stop disabled after), and "new run from this config" filling the Train form."""

from __future__ import annotations

import pytest

from helpers import free_port, wait_for
from test_app_browser import ARGS, CHROMIUM, pytestmark  # noqa: F401  (skipped without chromium)

from fabe.runs import manager as runs
from fabe.training.config import TrainConfig
from fabe.training.run import train


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_dataset, tiny_model_dir):
    """The app over a runs folder holding two short finished runs (learning rates 1e-3 and
    3e-4) and one live run that logs every step."""
    import app

    runs_dir = tmp_path_factory.mktemp("runs-page") / "runs"
    base = dict(data=str(small_dataset), model=str(tiny_model_dir), mode="simple", batch_size=2, eval_steps=0,
                logging_steps=1, save_steps=100000, max_length=768)
    for name, lr in (("lr-high", 1e-3), ("lr-low", 3e-4)):
        train(TrainConfig(**base, max_steps=3, learning_rate=lr, out=str(runs_dir / name)))
    live = runs.launch(TrainConfig(**base, max_steps=5000), "cpu", runs_dir, "live")
    wait_for(lambda: len(live.read_metrics()) >= 2)
    demo = app.build_app(runs_dir, roots=[tmp_path_factory.getbasetemp()])
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True,
                        css=app.CSS, quiet=True, ssr_mode=False)
    yield f"http://127.0.0.1:{port}", live
    demo.close()
    if runs.reconcile(live)["state"] in runs.LIVE:
        runs.stop(live.path, grace_s=30)


@pytest.fixture(scope="module")
def browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A new tab per test: each opens its run by its link, as a bookmark would."""
    tab = browser.new_page()
    yield tab
    tab.close()


def open_run(page, url: str, run_id: str) -> None:
    page.goto(f"{url}/?run={run_id}")
    page.wait_for_selector(f"#run-progress >> text={run_id}", timeout=60_000)


def plot_js(elem_id: str, expr: str) -> str:
    return f"() => {{ const p = document.querySelector('#{elem_id} .js-plotly-plot'); return {expr}; }}"


def plot_area(page, elem_id: str) -> dict:
    """The plot area's box (a drag there zooms, as a user does); the live refresh may be
    redrawing the chart at the moment asked, so it is asked again until it is there."""
    for _ in range(50):
        box = page.locator(f"#{elem_id} .nsewdrag").first.bounding_box()
        if box is not None:
            return box
        page.wait_for_timeout(200)
    raise AssertionError(f"#{elem_id}: no plot area")


def test_two_runs_are_overlaid_with_the_options_that_differ(page, served):
    url, _ = served
    open_run(page, url, "lr-high")
    box = page.locator("#compare-pick input")
    for run_id in ("lr-high", "lr-low"):
        box.click()
        page.locator("#compare-pick").get_by_role("option", name=run_id, exact=True).click()
    page.wait_for_function(plot_js("compare-plot", "p && p.data && new Set(p.data.map(t => t.legendgroup)).size === 2"),
                           timeout=60_000)
    traces = page.evaluate(plot_js("compare-plot", "p.data.map(t => [t.legendgroup, t.x.length, t.mode])"))
    assert sorted(t[0] for t in traces) == ["lr-high", "lr-low"]
    assert all(n == 3 and "markers" in mode for _, n, mode in traces)  # three points each, drawn visibly
    page.wait_for_function("() => document.querySelector('#config-diff').innerText.includes('learning_rate')",
                           timeout=30_000)
    diff = page.locator("#config-diff").inner_text()
    assert "0.001" in diff and "0.0003" in diff and "max_steps" not in diff  # both ran 3 steps


def test_a_zoom_survives_the_live_refresh(page, served):
    url, _ = served
    open_run(page, url, "live")
    page.wait_for_function(plot_js("loss-plot", "p && p.data && p.data.length && p.data[0].x.length >= 2"),
                           timeout=120_000)
    box = plot_area(page, "loss-plot")
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y + 5, steps=8)
    page.mouse.up()
    page.wait_for_function(plot_js("loss-plot", "p._fullLayout.xaxis.autorange === false"), timeout=10_000)
    zoom = page.evaluate(plot_js("loss-plot", "p._fullLayout.xaxis.range"))
    before = page.evaluate(plot_js("loss-plot", "p.data[0].x.length"))
    page.wait_for_function(plot_js("loss-plot", f"p.data[0].x.length > {before}"), timeout=120_000)  # refreshed
    page.wait_for_timeout(500)
    assert page.evaluate(plot_js("loss-plot", "p._fullLayout.xaxis.range")) == pytest.approx(zoom)
    full = page.evaluate(plot_js("loss-plot", "[Math.min(...p.data[0].x), Math.max(...p.data[0].x)]"))
    assert zoom[1] < full[1]  # a zoom indeed: the newest points lie outside it
    # the log box follows the newest lines as they come
    page.wait_for_function("""() => { const t = document.querySelector('#run-log textarea');
        return t && t.scrollHeight > t.clientHeight && t.scrollTop + t.clientHeight >= t.scrollHeight - 4; }""",
                           timeout=30_000)


def test_a_reload_keeps_the_selected_run(page, served):
    url, _ = served
    open_run(page, url, "lr-low")
    page.locator("#run-pick input").click()
    page.locator("#run-pick").get_by_role("option", name="lr-high", exact=True).click()
    page.wait_for_function("() => window.location.search === '?run=lr-high'", timeout=30_000)
    page.reload()
    page.wait_for_selector("#run-progress >> text=lr-high", timeout=60_000)
    assert page.locator("#run-pick input").input_value() == "lr-high"
    assert page.locator("#run-stop").is_disabled() and page.locator("#run-delete").is_enabled()  # a finished run
    page.goto(f"{url}/?run=no-such-run")
    page.wait_for_selector("#run-action >> text=No run no-such-run", timeout=60_000)


def test_stop_shows_the_step_of_the_saved_checkpoint(page, served):
    url, live = served
    open_run(page, url, "live")
    assert page.locator("#run-stop").is_enabled() and page.locator("#run-resume").is_disabled()
    page.locator("#run-stop").click()
    page.wait_for_selector("#run-action >> text=Stopped", timeout=180_000)
    (checkpoint,) = live.checkpoints()
    page.wait_for_selector(f"#run-saved >> text={checkpoint.name}", timeout=30_000)
    step = checkpoint.name.split("-")[1]
    assert f"step {step}/5000" in page.locator("#run-progress").inner_text()
    last = [line for line in live.log_path.read_text().splitlines() if line.strip()][-1]
    assert page.locator("#run-last-line").inner_text().strip() == last.strip()
    page.wait_for_function("() => document.querySelector('#run-stop').disabled", timeout=30_000)
    assert page.locator("#run-resume").is_enabled()
    page.wait_for_function(f"() => document.querySelector('#run-checkpoints').innerText.includes('{checkpoint.name}')",
                           timeout=30_000)


def test_a_new_run_from_a_runs_config_fills_the_train_form(page, served):
    url, _ = served
    open_run(page, url, "lr-low")
    page.get_by_role("button", name="New run from the selected run's config (fills the Train tab)").click()
    page.wait_for_selector("#launch-message >> text=Form filled from", timeout=30_000)
    assert float(page.get_by_label("Learning rate", exact=True).input_value()) == pytest.approx(3e-4)
    assert page.get_by_label("Max steps", exact=True).input_value() == "3"
