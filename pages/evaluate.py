"""Evaluate tab: evaluate one or more cleaners (runs, checkpoints, the shipped one) on a split
with counts and an ETA, compare saved evaluations in a table (every rate with its 95%
interval and count, overall and per trigger kind) and plotly bar charts, browse an
evaluation's records filtered by trigger kind and outcome, open any of them in the Clean tab,
and export an evaluation for a paper (Markdown, LaTeX, PNG, CSV)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from fabe.cleaning.cleaner import DECODINGS, CleanConfig
from fabe.cleaning.serving import cleaner_sources, resolve_source
from fabe.evaluation.report import (
    FORMATS,
    OUTCOMES,
    by_trigger_figure,
    compare_figure,
    compare_table,
    load_records_frame,
    records_view,
    source_label,
)
from fabe.evaluation.runner import default_eval_dir, load_eval, run_eval, saved_evals
from fabe.progress import Eta
from fabe.training.modeling import ModelLoadError
from pages.context import AppContext
from pages.exports import export_download


@dataclass
class EvaluateTab:
    open_record: gr.Button
    record_ref: list  # [evaluation folder, its split, record id] sent to the Clean tab


class Actions:
    """The tab's event handlers, bound to the app."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def label(self, folder: Path) -> str:
        try:
            return str(folder.relative_to(self.ctx.runs_dir))
        except ValueError:
            return str(folder)

    def choices(self) -> list[tuple[str, str]]:
        return [(self.label(f), str(f)) for f in saved_evals(self.ctx.runs_dir)]

    def compare(self, folders: list[str] | None):
        """Table of the chosen evaluations' rates (overall and per trigger kind, each with its
        interval and count) and the two charts."""
        results = {self.label(Path(f)): load_eval(f) for f in folders or []}
        return compare_table(results), compare_figure(results), by_trigger_figure(results)

    def on_refresh(self, current_saved: list[str] | None):
        found = self.choices()
        return (gr.update(choices=cleaner_sources(self.ctx.runs_dir)),
                gr.update(choices=found, value=current_saved), gr.update(choices=found))

    def _inputs(self, srcs: list[str] | None, split: str, k: float, decoding: str, max_new: float):
        if not srcs:
            raise gr.Error("Choose at least one cleaner.")
        try:
            cfg = CleanConfig(k=int(k), decoding=decoding, max_new_tokens=int(max_new or 0))
            return cfg, self.ctx.split(split), [self.ctx.confine_model(src) for src in srcs]
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None

    def on_run(self, srcs: list[str] | None, split: str, limit: float, k: float, decoding: str, max_new: float,
               current: list[str] | None, progress=gr.Progress()):
        cfg, data, models = self._inputs(srcs, split, k, decoding, max_new)
        done = []
        for i, (src, model) in enumerate(zip(srcs, models)):
            source = resolve_source(model)
            out = default_eval_dir(source, data, cfg, int(limit), root=self.ctx.runs_dir / "_evals")
            desc, eta = f"cleaner {i + 1}/{len(srcs)} ({source_label(str(source))})", Eta("records")
            progress(0, desc=f"{desc}: loading the records and the model")
            try:
                _, folder = run_eval(source, data, cfg, int(limit), out, progress=lambda n, total: progress(
                    (n, total), desc=f"{desc}: {eta.text(n, total)}", unit="records"))
            except (OSError, ValueError, ModelLoadError) as e:
                raise gr.Error(f"{src}: {e}") from None
            done.append(str(folder))
        picked = list(dict.fromkeys(done + (current or [])))
        found = self.choices()
        return (f"Evaluated {len(done)} cleaner(s) on `{data}`.", gr.update(choices=found, value=picked),
                gr.update(choices=found), *self.compare(picked))

    def on_browse(self, folder: str | None, trigger: str = "all", outcome: str = "all"):
        """The evaluation's records of one trigger kind and outcome; the kinds it has."""
        if not folder:
            return None, gr.update(choices=[]), "", gr.update(choices=["all"], value="all")
        try:
            frame = load_records_frame(folder)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        kinds = ["all", *sorted(frame["trigger"].unique())]
        trigger = trigger if trigger in kinds else "all"
        view = records_view(frame, trigger, outcome or "all")
        return (view, gr.update(choices=list(view["id"]), value=None), load_eval(folder)["meta"]["data"],
                gr.update(choices=kinds, value=trigger))


def _layout(ctx: AppContext, act: Actions) -> dict[str, Any]:
    w: dict[str, Any] = {}
    gr.Markdown("Clean every record of a split with each chosen cleaner; results are saved next to "
                "the run (`evals/`) and listed below for comparison.")
    with gr.Row():
        w["chosen"] = gr.Dropdown(cleaner_sources(ctx.runs_dir), multiselect=True, label="Cleaners to evaluate",
                                  elem_id="eval-sources", allow_custom_value=True, scale=4)
        w["refresh"] = gr.Button("Refresh lists", scale=1)
    with gr.Row():
        w["split"] = gr.Textbox("embedded", label="Split to evaluate on (.jsonl/.json; embedded: its test split)")
        w["limit"] = gr.Number(100, precision=0, label="First N records (0: all)")
        w["k"] = gr.Number(4, precision=0, label="K")
        w["decoding"] = gr.Radio(list(DECODINGS), value="diverse_beam", label="Decoding")
        w["max_new"] = gr.Number(0, precision=0, label="Max new tokens (0: auto)")
    w["run"] = gr.Button("Evaluate", variant="primary")
    w["message"] = gr.Markdown(elem_id="eval-message")
    w["saved"] = gr.Dropdown(act.choices(), multiselect=True, label="Saved evaluations to compare",
                             elem_id="eval-saved")
    w["table"] = gr.Dataframe(compare_table({}), interactive=False, elem_id="eval-table")
    with gr.Row():
        w["overall"] = gr.Plot(elem_id="eval-chart")
        w["per_kind"] = gr.Plot(elem_id="eval-by-trigger")
    with gr.Accordion("Record browser and export", open=False):
        w["browse"] = gr.Dropdown(act.choices(), label="Evaluation", elem_id="eval-browse")
        with gr.Row():
            w["kind"] = gr.Dropdown(["all"], value="all", label="Trigger kind", elem_id="eval-kind",
                                    allow_custom_value=True)  # its choices follow the evaluation browsed
            w["outcome"] = gr.Radio(list(OUTCOMES), value="all", label="Outcome", elem_id="eval-outcome")
        w["records"] = gr.Dataframe(interactive=False, elem_id="eval-records")
        w["record_id"] = gr.Dropdown(label="Record to open", choices=[], elem_id="eval-record")
        w["open"] = gr.Button("Open in the Clean tab")
        w["data_of"] = gr.Textbox(visible=False)
        with gr.Row():
            w["format"] = gr.Radio(list(FORMATS), value="md", label="Export format (md, tex: tables; png: chart; "
                                   "csv: the rates as numbers)", elem_id="eval-export-format")
            w["export"] = gr.Button("Export the evaluation", elem_id="eval-export")
        w["exported"] = gr.File(label="Exported file", interactive=False, elem_id="eval-exported", height=90)
    return w


def build(ctx: AppContext) -> EvaluateTab:
    act = Actions(ctx)
    with gr.Tab("Evaluate", id="evaluate"):
        w = _layout(ctx, act)
        w["refresh"].click(act.on_refresh, [w["saved"]], [w["chosen"], w["saved"], w["browse"]])
        w["run"].click(act.on_run, [w[n] for n in ("chosen", "split", "limit", "k", "decoding", "max_new", "saved")],
                       [w[n] for n in ("message", "saved", "browse", "table", "overall", "per_kind")],
                       api_name="evaluate")
        # .input, not .change: Gradio 6 fires no change for a pick among (label, value) choices set at build time
        w["saved"].input(act.compare, [w["saved"]], [w["table"], w["overall"], w["per_kind"]], api_name="compare_evals")
        browsed = [w["records"], w["record_id"], w["data_of"], w["kind"]]
        for box in ("browse", "kind", "outcome"):
            w[box].input(act.on_browse, [w["browse"], w["kind"], w["outcome"]], browsed, api_name=f"eval_{box}")
        w["export"].click(export_download, [w["browse"], w["format"]], [w["exported"]], api_name="export_eval")
    return EvaluateTab(open_record=w["open"], record_ref=[w["browse"], w["data_of"], w["record_id"]])
