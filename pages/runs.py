"""Runs tab: every run with its state and progress; for the selected run, live loss and
learning-rate charts (the user's zoom kept across refreshes), a progress bar with ETA, the
saved checkpoint and the log's last line, the log, downloads of the whole log and metrics,
its checkpoints with a quick evaluation, GPU memory; Stop, Resume, Delete, each enabled only
where it applies. Several runs can be compared: any logged metric overlaid and the options
that differ. `?run=ID` in the address selects a run, and selecting one writes it there, so a
reload keeps it. Polling reads only the metrics appended since the last read (shared by
every open tab) and stops when the run has ended."""

from __future__ import annotations

import html
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from fabe.rundir import RunDir
from fabe.runs import experiments
from fabe.runs import manager as runs
from fabe.runs.processes import gpu_list
from pages.context import AppContext
from pages.plots import CURVES, X_AXES, loss_figure, lr_figure, overlay_figure

COLUMNS = ["id", "state", "mode", "model", "gpus", "step/max", "s/step", "ETA", "started", "last loss"]
SHOWN = ("loss_plot", "lr_plot", "progress", "log", "timer", "stop", "resume", "delete", "checkpoints")
COMPARED = ("compare_pick", "metric", "x_axis", "y_axis")
LOG_LINES = 200
# Writes the picked run into the address (?run=ID), so a reload or a shared link shows it.
LINK_JS = """(run) => { const url = new URL(window.location.href);
  if (run) { url.searchParams.set('run', run); } else { url.searchParams.delete('run'); }
  window.history.replaceState(null, '', url); }"""

# Gradio re-mounts a gr.Plot whenever its figure changes, so plotly's own `uirevision` never
# sees the previous chart: this script keeps each chart's user zoom (box zoom, pan; a double
# click resets it) per chart and uirevision, and applies it again to the re-mounted chart.
KEEP_ZOOM_JS = """() => {
  if (window.fabeZoom) { return; }
  window.fabeZoom = {};
  const charts = ["loss-plot", "lr-plot", "compare-plot"];
  const keyOf = (id, div) => id + '|' + String(div.layout && div.layout.uirevision);
  const remember = (key, event) => {
    const view = {...(window.fabeZoom[key] || {})};
    for (const axis of ['xaxis', 'yaxis']) {
      if (event[axis + '.autorange']) { for (const k in view) { if (k.startsWith(axis + '.')) delete view[k]; } }
      for (const k in event) { if (k.startsWith(axis + '.range')) view[k] = event[k]; }
    }
    window.fabeZoom[key] = view;
  };
  const attach = (id, div) => {
    div.fabeZoomed = true;
    const key = keyOf(id, div);
    const view = window.fabeZoom[key];
    if (view && Object.keys(view).length) { window.Plotly.relayout(div, view); }
    div.on('plotly_relayout', (event) => remember(key, event));
  };
  new MutationObserver(() => {
    for (const id of charts) {
      const div = document.querySelector('#' + id + ' .js-plotly-plot');
      if (div && !div.fabeZoomed && div.on && div.querySelector('.nsewdrag')) { attach(id, div); }
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""

FOLLOW_LOG_JS = """() => {
  // the log box shows its newest lines: scrolled to the bottom whenever its text changes,
  // unless the reader has scrolled up to read older lines
  document.addEventListener('scroll', (e) => {
    const t = e.target;
    if (t.matches && t.matches('#run-log textarea')) { t.fabeAtEnd = t.scrollTop + t.clientHeight >= t.scrollHeight - 4; }
  }, true);
  setInterval(() => {
    const t = document.querySelector('#run-log textarea');
    if (!t || t.value === t.fabeSeen) { return; }
    t.fabeSeen = t.value;
    if (t.fabeAtEnd !== false) { t.scrollTop = t.scrollHeight; }
  }, 500);
}"""
PAGE_JS = f"() => {{ if (window.fabePage) {{ return; }} window.fabePage = true; ({KEEP_ZOOM_JS})(); ({FOLLOW_LOG_JS})(); }}"


@dataclass
class RunsTab:
    select: Any  # (run id) -> the outputs of showing that run
    link: Any  # (request) -> the outputs of opening the run named by ?run=ID, and the tab
    pick: gr.Dropdown  # the selected run
    new_from: gr.Button  # "new run from this config"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _step(info: runs.RunInfo) -> int:
    """The step the run has reached: a checkpoint saved at a stop may be past the last logged step."""
    return max(info.step or 0, info.saved_step or 0)


def runs_table(ctx: AppContext) -> list[list[Any]]:
    rows = []
    for r in runs.list_runs(ctx.runs_dir):
        started = time.strftime("%m-%d %H:%M", time.localtime(r.started_at)) if r.started_at else ""
        rows.append([r.id, r.state, r.mode, r.model, r.gpus, f"{_step(r)}/{r.max_steps or '?'}", r.s_per_step or "",
                     _eta(r.eta_s), started, round(r.last_loss, 4) if r.last_loss is not None else ""])
    return rows


def _progress_html(info: runs.RunInfo | None) -> str:
    if info is None:
        return ""
    done = _step(info) / info.max_steps if info.max_steps else 0.0
    eta = f", ETA {_eta(info.eta_s)}" if info.eta_s is not None else (
        ", ETA: measuring since the restart" if info.state == "running" else "")
    logged = f" (last logged step {info.step})" if info.step is not None and info.step != _step(info) else ""
    saved = (f"<br><span id='run-saved'>Last saved checkpoint: <b>checkpoint-{info.saved_step}</b> (step "
             f"{info.saved_step}; a resume starts there)</span>") if info.saved_step is not None else ""
    hint = f"<br><b>Hint:</b> {html.escape(info.hint)}" if info.hint else ""
    line = f"<br>Log: <code id='run-last-line'>{html.escape(info.last_line)}</code>" if info.last_line else ""
    return (f"<div id='run-progress'><b>{info.id}</b>: {info.state}, step {_step(info)}/{info.max_steps or '?'}"
            f"{logged}{eta}<progress value='{done:.4f}' max='1' style='width:100%'></progress>{saved}{line}{hint}</div>")


def _gpu_markdown() -> str:
    gpus = gpu_list()
    if not gpus:
        return "No GPU on this machine (CPU runs only)."
    return "\n".join(f"- GPU {g['index']} {g['name']}: {g['memory_used_mb']} / {g['memory_total_mb']} MB"
                     for g in gpus)


def _checkpoints(run: RunDir) -> pd.DataFrame:
    return experiments.checkpoints_frame(experiments.list_checkpoints(run.path))


def show(ctx: AppContext, run_id: str | None) -> tuple:
    """Everything shown for `run_id` (in SHOWN's order); its metrics are read incrementally
    (see AppContext); the buttons that do not apply to its state are disabled."""
    run = RunDir(ctx.runs_dir / run_id) if run_id else None
    info = runs.run_info(run) if run and run.path.exists() else None
    if info is None:
        off = gr.Button(interactive=False)
        return None, None, "", "", gr.Timer(active=False), off, off, off, experiments.checkpoints_frame([])
    columns = ctx.metrics(run_id)
    buttons = [gr.Button(interactive=a in info.actions) for a in ("stop", "resume", "delete")]
    return (loss_figure(columns, uirevision=run_id), lr_figure(columns, uirevision=run_id), _progress_html(info),
            runs.log_tail(run, LOG_LINES), gr.Timer(active=info.state in runs.LIVE), *buttons, _checkpoints(run))


PICK_TWO = "Pick two or more runs to see the options that differ."


def compare(ctx: AppContext, run_ids: list[str] | None, metric: str, x_axis: str, y_axis: str) -> tuple:
    """The overlay of `metric` for the runs and the table of the options that differ."""
    ids = [r for r in run_ids or [] if (ctx.runs_dir / r).is_dir()]
    figure = overlay_figure({r: ctx.metrics(r) for r in ids}, metric, x_axis, y_axis == "log",
                            uirevision=f"{','.join(ids)}|{metric}|{x_axis}|{y_axis}")
    if len(ids) < 2:
        return figure, pd.DataFrame(columns=["option"]), PICK_TWO
    try:
        diff = experiments.config_diff([ctx.runs_dir / r for r in ids])
    except ValueError as e:
        return figure, pd.DataFrame(columns=["option"]), f"**Cannot compare:** {e}"
    note = "Their options are identical." if diff.empty else f"{len(diff)} option(s) differ."
    return figure, diff.map(str).reset_index(), note


class Actions:
    """The tab's event handlers, bound to the app."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def on_refresh(self, run_id: str | None):
        rows = runs_table(self.ctx)
        ids = [r[0] for r in rows]
        choices = gr.update(choices=ids)
        return rows, gr.update(choices=ids, value=run_id if run_id in ids else None), choices, _gpu_markdown()

    def on_select(self, run_id: str | None):
        return show(self.ctx, run_id)

    def on_tick(self, run_id: str | None, *compared: Any):
        return (*show(self.ctx, run_id), runs_table(self.ctx), compare(self.ctx, *compared)[0])

    def on_compare(self, *compared: Any):
        return compare(self.ctx, *compared)

    def act(self, fn, verb: str):
        """A handler that applies `fn` to the picked run and says what happened."""
        def handler(run_id: str | None, *extra: Any) -> str:
            if not run_id:
                return "Pick a run first."
            try:
                fn(self.ctx.runs_dir / run_id, *extra)
            except ValueError as e:
                return f"**{verb} failed:** {e}"
            return f"{verb}: **{run_id}**"
        return handler

    def on_quick_eval(self, run_id: str | None, n: float | None) -> tuple[str, Any]:
        """Quick-evaluate every checkpoint of the run not yet evaluated on `n` records."""
        if not run_id:
            return "Pick a run first.", gr.update()
        if not n or n < 1 or n != int(n):
            return f"**Quick evaluation:** give a whole number of records >= 1, not {n!r}", gr.update()
        run = RunDir(self.ctx.runs_dir / run_id)
        try:
            infos = experiments.quick_eval_all(run.path, int(n))
        except (ValueError, FileNotFoundError) as e:
            return f"**Quick evaluation failed:** {e}", gr.update()
        done = sum(1 for c in infos if (c.quick or {}).get("records") == int(n))
        return f"Evaluated {done} checkpoint(s) of **{run_id}** on {int(n)} records.", experiments.checkpoints_frame(infos)

    def on_files(self, run_id: str | None) -> list[str] | None:
        if not run_id:
            raise gr.Error("Pick a run first.")
        try:
            copies = experiments.copy_run_files(self.ctx.runs_dir / run_id, tempfile.mkdtemp(prefix="fabe-run-"))
        except ValueError as e:
            raise gr.Error(str(e)) from e
        return [str(p) for p in copies] or None

    def select(self, run_id: str):
        """Show `run_id` (the run just launched from the Train tab)."""
        if not run_id:
            return gr.update(), gr.update()
        rows = runs_table(self.ctx)
        return rows, gr.update(choices=[r[0] for r in rows], value=run_id)

    def link(self, request: gr.Request):
        """Open the run named by the address's `?run=ID` (the Runs tab too); a missing one is said."""
        run_id = request.query_params.get("run") if request else None
        if not run_id:
            return gr.update(), gr.update(), gr.update(), *(gr.update() for _ in SHOWN), gr.Tabs()
        rows = runs_table(self.ctx)
        ids = [r[0] for r in rows]
        if run_id not in ids:
            return (rows, gr.update(choices=ids, value=None), f"**No run {html.escape(run_id)}** (from the link).",
                    *show(self.ctx, None), gr.Tabs(selected="runs"))
        # shown here too, not only through the dropdown's change event
        return rows, gr.update(choices=ids, value=run_id), "", *show(self.ctx, run_id), gr.Tabs(selected="runs")


def _run_layout(ctx: AppContext, w: dict[str, Any]) -> None:
    """The selected run: progress, charts, log, downloads, GPUs and the actions."""
    w["progress"] = gr.HTML()
    with gr.Row():
        w["loss_plot"] = gr.Plot(elem_id="loss-plot")
        w["lr_plot"] = gr.Plot(elem_id="lr-plot")
    w["log"] = gr.Textbox(label=f"train.log (last {LOG_LINES} lines, newest at the bottom)", lines=16, max_lines=16,
                          autoscroll=True, elem_id="run-log")
    with gr.Row():
        w["files_button"] = gr.Button("Download the whole train.log and metrics.jsonl")
        w["files"] = gr.File(label="Run files", file_count="multiple", interactive=False, elem_id="run-files",
                             height=90)
    w["gpus"] = gr.Markdown(_gpu_markdown())
    with gr.Row():
        w["stop"] = gr.Button("Stop", interactive=False, elem_id="run-stop")
        w["resume"] = gr.Button("Resume", interactive=False, elem_id="run-resume")
        w["confirm"] = gr.Checkbox(label="Yes, delete this run and its checkpoints")
        w["delete"] = gr.Button("Delete", variant="stop", interactive=False, elem_id="run-delete")
    w["action"] = gr.Markdown(elem_id="run-action")


def _extra_layout(ids: list[str], w: dict[str, Any]) -> None:
    """The run's checkpoints with their quick evaluation, and the comparison of runs."""
    with gr.Accordion("Checkpoints (step, size, quick evaluation on the run's valid split)", open=True):
        w["checkpoints"] = gr.Dataframe(interactive=False, elem_id="run-checkpoints")
        with gr.Row():
            w["quick_n"] = gr.Number(20, precision=0, label="Records for a quick evaluation", minimum=1)
            w["quick"] = gr.Button("Quick-evaluate the checkpoints not yet evaluated")
        w["quick_message"] = gr.Markdown(elem_id="quick-message")
    with gr.Accordion("Compare runs", open=True):
        with gr.Row():
            w["compare_pick"] = gr.Dropdown(ids, multiselect=True, label="Runs to compare", elem_id="compare-pick")
            w["metric"] = gr.Dropdown([(v, k) for k, v in CURVES.items()], value="loss", label="Metric")
            w["x_axis"] = gr.Radio([(v.split(" (")[0], k) for k, v in X_AXES.items()], value="step", label="x axis")
            w["y_axis"] = gr.Radio(["linear", "log"], value="linear", label="y axis")
        w["compare_plot"] = gr.Plot(elem_id="compare-plot")
        w["diff_note"] = gr.Markdown(PICK_TWO, elem_id="config-diff-note")
        w["diff"] = gr.Dataframe(pd.DataFrame(columns=["option"]), interactive=False, wrap=True, elem_id="config-diff")
        w["new_from"] = gr.Button("New run from the selected run's config (fills the Train tab)")


def _layout(ctx: AppContext) -> dict[str, Any]:
    ids = [r[0] for r in runs_table(ctx)]
    w: dict[str, Any] = {"table": gr.Dataframe(headers=COLUMNS, value=lambda: runs_table(ctx), interactive=False,
                                               elem_id="runs-table")}
    with gr.Row():
        w["refresh"] = gr.Button("Refresh")
        w["pick"] = gr.Dropdown(label="Run", choices=ids, elem_id="run-pick")
    _run_layout(ctx, w)
    _extra_layout(ids, w)
    w["timer"] = gr.Timer(2.0, active=False)
    return w


def _wire(act: Actions, w: dict[str, Any]) -> None:
    shown = [w[n] for n in SHOWN]
    compared = [w[n] for n in COMPARED]
    listed = [w["table"], w["pick"], w["compare_pick"], w["gpus"]]
    w["refresh"].click(act.on_refresh, [w["pick"]], listed, api_name="refresh_runs")
    w["pick"].change(act.on_select, [w["pick"]], shown, api_name="show_run")
    w["pick"].change(None, [w["pick"]], None, js=LINK_JS)
    w["timer"].tick(act.on_tick, [w["pick"], *compared], shown + [w["table"], w["compare_plot"]], api_name="poll_run")
    for name, widget in zip(("compare_runs", "compare_metric", "compare_x_axis", "compare_y_axis"), compared):
        widget.change(act.on_compare, compared, [w["compare_plot"], w["diff"], w["diff_note"]], api_name=name)
    w["quick"].click(act.on_quick_eval, [w["pick"], w["quick_n"]], [w["quick_message"], w["checkpoints"]],
                     api_name="quick_eval_checkpoints")
    w["files_button"].click(act.on_files, [w["pick"]], [w["files"]], api_name="run_files")
    for name, fn, verb, extra in (("stop", lambda p: runs.stop(p, grace_s=120), "Stopped", []),
                                  ("resume", runs.resume, "Resumed", []),
                                  ("delete", lambda p, ok: runs.delete(p, confirm=ok), "Deleted", [w["confirm"]])):
        w[name].click(act.act(fn, verb), [w["pick"], *extra], [w["action"]], api_name=f"{name}_run").then(
            act.on_select, [w["pick"]], shown).then(act.on_refresh, [w["pick"]], listed)


def build(ctx: AppContext) -> RunsTab:
    act = Actions(ctx)
    with gr.Tab("Runs", id="runs"):
        w = _layout(ctx)
        _wire(act, w)
    return RunsTab(select=(act.select, [w["table"], w["pick"]]),
                   link=(act.link, [w["table"], w["pick"], w["action"], *(w[n] for n in SHOWN)]), pick=w["pick"],
                   new_from=w["new_from"])
