"""Runs tab: every run with its state and progress; for the selected run, live loss and
learning-rate charts, a progress bar with ETA, the log tail and GPU memory; Stop, Resume,
Delete. Polling reads only the metrics appended since the last read (shared by every open
tab) and stops when the run has ended."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from fabe.rundir import RunDir
from fabe.runs import manager as runs
from fabe.runs.processes import gpu_list
from pages.context import AppContext
from pages.plots import loss_figure, lr_figure

COLUMNS = ["id", "state", "mode", "model", "gpus", "step/max", "s/step", "ETA", "started", "last loss"]


@dataclass
class RunsTab:
    select: Any  # (run id) -> the outputs of showing that run


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def runs_table(ctx: AppContext) -> list[list[Any]]:
    rows = []
    for r in runs.list_runs(ctx.runs_dir):
        started = time.strftime("%m-%d %H:%M", time.localtime(r.started_at)) if r.started_at else ""
        rows.append([r.id, r.state, r.mode, r.model, r.gpus,
                     f"{r.step or 0}/{r.max_steps or '?'}", r.s_per_step or "", _eta(r.eta_s), started,
                     round(r.last_loss, 4) if r.last_loss is not None else ""])
    return rows


def _progress_html(info: runs.RunInfo | None) -> str:
    if info is None:
        return ""
    done = (info.step or 0) / info.max_steps if info.max_steps else 0.0
    eta = f", ETA {_eta(info.eta_s)}" if info.eta_s is not None else ""
    hint = f"<br><b>Hint:</b> {info.hint}" if info.hint else ""
    return (f"<div id='run-progress'><b>{info.id}</b>: {info.state}, step {info.step or 0}/"
            f"{info.max_steps or '?'}{eta}<progress value='{done:.4f}' max='1' style='width:100%'>"
            f"</progress>{hint}</div>")


def _gpu_markdown() -> str:
    gpus = gpu_list()
    if not gpus:
        return "No GPU on this machine (CPU runs only)."
    return "\n".join(f"- GPU {g['index']} {g['name']}: {g['memory_used_mb']} / {g['memory_total_mb']} MB"
                     for g in gpus)


def show(ctx: AppContext, run_id: str | None):
    """Everything shown for `run_id`; its metrics are read incrementally (see AppContext)."""
    if not run_id:
        return None, None, "", "", gr.Timer(active=False)
    run = RunDir(ctx.runs_dir / run_id)
    columns = ctx.metrics(run_id)
    info = runs.run_info(run) if run.path.exists() else None
    live = info is not None and info.state in runs.LIVE
    return (loss_figure(columns), lr_figure(columns), _progress_html(info),
            runs.log_tail(run, 12) if info else "", gr.Timer(active=live))


class Actions:
    """The tab's event handlers, bound to the app."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def on_refresh(self, run_id: str | None):
        rows = runs_table(self.ctx)
        ids = [r[0] for r in rows]
        return rows, gr.update(choices=ids, value=run_id if run_id in ids else None), _gpu_markdown()

    def on_select(self, run_id: str | None):
        return show(self.ctx, run_id)

    def on_tick(self, run_id: str | None):
        return (*show(self.ctx, run_id), runs_table(self.ctx))

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

    def select(self, run_id: str):
        """Show `run_id` (the run just launched from the Train tab)."""
        if not run_id:
            return gr.update(), gr.update()
        rows = runs_table(self.ctx)
        return rows, gr.update(choices=[r[0] for r in rows], value=run_id)


def _layout(ctx: AppContext) -> dict[str, Any]:
    w: dict[str, Any] = {"table": gr.Dataframe(headers=COLUMNS, value=lambda: runs_table(ctx), interactive=False,
                                               elem_id="runs-table")}
    with gr.Row():
        w["refresh"] = gr.Button("Refresh")
        w["pick"] = gr.Dropdown(label="Run", choices=[r[0] for r in runs_table(ctx)], elem_id="run-pick")
    w["progress"] = gr.HTML()
    with gr.Row():
        w["loss_plot"] = gr.Plot(elem_id="loss-plot")
        w["lr_plot"] = gr.Plot(elem_id="lr-plot")
    w["log"] = gr.Textbox(label="train.log (last lines, newest at the bottom)", lines=16, max_lines=16,
                          autoscroll=True, elem_id="run-log")
    w["gpus"] = gr.Markdown(_gpu_markdown())
    with gr.Row():
        w["stop"] = gr.Button("Stop")
        w["resume"] = gr.Button("Resume")
        w["confirm"] = gr.Checkbox(label="Yes, delete this run and its checkpoints")
        w["delete"] = gr.Button("Delete", variant="stop")
    w["action"] = gr.Markdown(elem_id="run-action")
    w["timer"] = gr.Timer(2.0, active=False)
    return w


def _wire(act: Actions, w: dict[str, Any]) -> None:
    shown = [w[n] for n in ("loss_plot", "lr_plot", "progress", "log", "timer")]
    listed = [w["table"], w["pick"], w["gpus"]]
    w["refresh"].click(act.on_refresh, [w["pick"]], listed, api_name="refresh_runs")
    w["pick"].change(act.on_select, [w["pick"]], shown, api_name="show_run")
    w["timer"].tick(act.on_tick, [w["pick"]], shown + [w["table"]], api_name="poll_run")
    w["stop"].click(act.act(lambda p: runs.stop(p, grace_s=120), "Stopped"), [w["pick"]], [w["action"]],
                    api_name="stop_run").then(act.on_select, [w["pick"]], shown).then(act.on_refresh, [w["pick"]], listed)
    w["resume"].click(act.act(runs.resume, "Resumed"), [w["pick"]], [w["action"]], api_name="resume_run").then(
        act.on_select, [w["pick"]], shown).then(act.on_refresh, [w["pick"]], listed)
    w["delete"].click(act.act(lambda p, ok: runs.delete(p, confirm=ok), "Deleted"), [w["pick"], w["confirm"]],
                      [w["action"]], api_name="delete_run").then(act.on_refresh, [w["pick"]], listed)


def build(ctx: AppContext) -> RunsTab:
    act = Actions(ctx)
    with gr.Tab("Runs", id="runs"):
        w = _layout(ctx)
        _wire(act, w)
    return RunsTab(select=(act.select, [w["table"], w["pick"]]))
