"""Evaluate tab: evaluate one or more cleaners (runs, checkpoints, the shipped one) on a split,
compare saved evaluations in a table and plotly bar charts (overall and per trigger kind),
and browse an evaluation's records, opening any of them in the Clean tab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from fabe.cleaning.cleaner import DECODINGS, CleanConfig
from fabe.evaluation.runner import default_eval_dir, load_eval, run_eval, saved_evals
from fabe.training.modeling import ModelLoadError
from fabe.cleaning.serving import cleaner_sources, resolve_source
from pages.context import AppContext
from pages.plots import COMPARED, by_trigger_figure, compare_figure


@dataclass
class EvaluateTab:
    open_record: gr.Button
    record_ref: list  # [split textbox value, record id] sent to the Clean tab


def _label(ctx: AppContext, folder: Path) -> str:
    try:
        return str(folder.relative_to(ctx.runs_dir))
    except ValueError:
        return str(folder)


def _choices(ctx: AppContext) -> list[tuple[str, str]]:
    return [(_label(ctx, f), str(f)) for f in saved_evals(ctx.runs_dir)]


def compare(ctx: AppContext, folders: list[str] | None):
    """Table of the chosen evaluations' overall metrics and the two charts."""
    results = {_label(ctx, Path(f)): load_eval(f) for f in folders or []}
    rows = [{"evaluation": name, "records": r["overall"]["records"],
             **{m: r["overall"].get(m) for m in COMPARED}, "s/record": r["meta"].get("s_per_record")}
            for name, r in results.items()]
    return pd.DataFrame(rows), compare_figure(results), by_trigger_figure(results)


def build(ctx: AppContext) -> EvaluateTab:
    sources = cleaner_sources(ctx.runs_dir)
    with gr.Tab("Evaluate", id="evaluate"):
        gr.Markdown("Clean every record of a split with each chosen cleaner; results are saved next to "
                    "the run (`evals/`) and listed below for comparison.")
        with gr.Row():
            chosen = gr.Dropdown(sources, multiselect=True, label="Cleaners to evaluate", elem_id="eval-sources",
                                 allow_custom_value=True, scale=4)
            refresh = gr.Button("Refresh lists", scale=1)
        with gr.Row():
            split = gr.Textbox("embedded", label="Split to evaluate on (.jsonl/.json; embedded: its test split)")
            limit = gr.Number(100, precision=0, label="First N records (0: all)")
            k = gr.Number(4, precision=0, label="K")
            decoding = gr.Radio(list(DECODINGS), value="diverse_beam", label="Decoding")
            max_new = gr.Number(0, precision=0, label="Max new tokens (0: auto)")
        run_btn = gr.Button("Evaluate", variant="primary")
        message = gr.Markdown(elem_id="eval-message")
        saved = gr.Dropdown(_choices(ctx), multiselect=True, label="Saved evaluations to compare",
                            elem_id="eval-saved")
        table = gr.Dataframe(interactive=False, elem_id="eval-table")
        with gr.Row():
            overall = gr.Plot(elem_id="eval-chart")
            per_kind = gr.Plot(elem_id="eval-by-trigger")
        with gr.Accordion("Record browser", open=False):
            browse = gr.Dropdown(_choices(ctx), label="Evaluation", elem_id="eval-browse")
            records = gr.Dataframe(interactive=False, elem_id="eval-records")
            record_id = gr.Dropdown(label="Record to open", choices=[], elem_id="eval-record")
            open_btn = gr.Button("Open in the Clean tab")
            data_of = gr.Textbox(visible=False)

        def on_refresh(current_saved: list[str] | None):
            found = _choices(ctx)
            return (gr.update(choices=cleaner_sources(ctx.runs_dir)),
                    gr.update(choices=found, value=current_saved), gr.update(choices=found))

        def on_run(srcs: list[str] | None, split_v: str, limit_v: float, k_v: float, dec_v: str, max_v: float,
                   current: list[str] | None, progress=gr.Progress()):
            from fabe.data.builder import resolve_data

            if not srcs:
                raise gr.Error("Choose at least one cleaner.")
            try:
                cfg = CleanConfig(k=int(k_v), decoding=dec_v, max_new_tokens=int(max_v or 0))
                data = Path(resolve_data(ctx.confine_data(split_v)))
                data = data / "test.jsonl" if data.is_dir() else data
                models = [ctx.confine_model(src) for src in srcs]
            except (OSError, ValueError) as e:
                raise gr.Error(str(e)) from None
            done = []
            for i, (src, model) in enumerate(zip(srcs, models)):
                source = resolve_source(model)
                out = default_eval_dir(source, data, cfg, int(limit_v), root=ctx.runs_dir / "_evals")
                desc = f"{i + 1}/{len(srcs)}: {Path(source).name}"
                try:
                    _, folder = run_eval(source, data, cfg, int(limit_v), out,
                                         progress=lambda n, total: progress((n, total), desc=desc, unit="records"))
                except (OSError, ValueError, ModelLoadError) as e:
                    raise gr.Error(f"{src}: {e}") from None
                done.append(str(folder))
            picked = list(dict.fromkeys(done + (current or [])))
            found = _choices(ctx)
            return (f"Evaluated {len(done)} cleaner(s) on `{data}`.", gr.update(choices=found, value=picked),
                    gr.update(choices=found), *compare(ctx, picked))

        def on_browse(folder: str | None):
            if not folder:
                return None, gr.update(choices=[]), ""
            frame = pd.read_csv(Path(folder) / "records.csv")
            view = frame[["id", "trigger", "exact", "removed", "changed", "parses", "weight", "codebleu"]]
            return view, gr.update(choices=list(frame["id"]), value=None), load_eval(folder)["meta"]["data"]

        refresh.click(on_refresh, [saved], [chosen, saved, browse])
        run_btn.click(on_run, [chosen, split, limit, k, decoding, max_new, saved],
                      [message, saved, browse, table, overall, per_kind], api_name="evaluate")
        saved.input(lambda f: compare(ctx, f), [saved], [table, overall, per_kind])  # user picks (see Defense tab)
        browse.input(on_browse, [browse], [records, record_id, data_of])
    return EvaluateTab(open_record=open_btn, record_ref=[data_of, record_id])
