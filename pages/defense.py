"""Defense tab: a victim classifier under FABE's front-door defense, top-1 cleaning, the
purifier baselines and no defense; ASR and clean accuracy per defense and trigger kind, each
with its 95% interval and count, as a table and a grouped bar chart, saved next to the
cleaner's run, shown again later and exported for a paper (Markdown, LaTeX, PNG, CSV). The
embedded victim's first-use training shows its steps and ETA in the progress bar."""

from __future__ import annotations

from typing import Any

import gradio as gr

from fabe import embedded
from fabe.cleaning.serving import cleaner_sources, resolve_source
from fabe.defense.defenses import (
    DEFENSES,
    default_defense_dir,
    load_defense,
    run_defense,
    saved_defenses,
)
from fabe.evaluation.report import FORMATS, defense_figure, defense_table, victim_line
from fabe.progress import Eta
from fabe.training.modeling import ModelLoadError
from pages.context import AppContext
from pages.exports import export_download


def show(folder: str | None):
    """The saved result's table, chart and the victim's own measure as a sentence."""
    if not folder:
        return None, None, ""
    result = load_defense(folder)
    return defense_table(result), defense_figure(result["defenses"]), victim_line(result.get("victim") or {})


def _reporter(progress: gr.Progress, what: str, unit: str):
    """progress(done, total) shown with its counts, pace and ETA."""
    eta = Eta(unit)
    return lambda n, total: progress((n, total), desc=f"{what}: {eta.text(n, total)}", unit=unit)


class Actions:
    """The tab's event handlers, bound to the app."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def choices(self) -> list[tuple[str, str]]:
        return [(str(p.relative_to(self.ctx.runs_dir)), str(p)) for p in saved_defenses(self.ctx.runs_dir)]

    def on_run(self, victim: str, cleaner: str | None, split: str, chosen: list[str], limit: float, k: float,
               progress=gr.Progress()):
        if not chosen:
            raise gr.Error("Choose at least one defense.")
        try:
            victim = self.ctx.confine_model(victim)
            data = self.ctx.split(split)
            source = resolve_source(self.ctx.confine_model(cleaner)) if cleaner else None
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None
        if embedded.needs_making(victim, "victim"):
            gr.Info("Training the embedded victim first (once, about a quarter of an hour on a CPU); "
                    "the progress bar shows its steps.")
        out = default_defense_dir(source or victim, data, int(limit), root=self.ctx.runs_dir / "_defense")
        progress(0, desc="loading the records, the victim and the cleaner; fitting the purifiers")
        try:
            _, folder = run_defense(victim, source, data, chosen, int(limit), int(k), out=out,
                                    progress=_reporter(progress, "defending", "records"),
                                    victim_progress=_reporter(progress, "training the embedded victim (once)",
                                                              "steps"))
        except (OSError, ValueError, ModelLoadError) as e:
            raise gr.Error(str(e)) from None
        return (f"Saved to `{folder}`.", gr.update(choices=self.choices(), value=str(folder)), *show(str(folder)))


def _layout(ctx: AppContext, act: Actions) -> dict[str, Any]:
    sources = cleaner_sources(ctx.runs_dir)
    w: dict[str, Any] = {}
    with gr.Row():
        w["victim"] = gr.Textbox("embedded", label="Victim classifier (a folder, or embedded: trained on first use)")
        w["cleaner"] = gr.Dropdown(sources, value=sources[0][1] if sources else None, allow_custom_value=True,
                                   label="Cleaner")
    with gr.Row():
        w["split"] = gr.Textbox("embedded", label="Split (.jsonl/.json; embedded: its test split)")
        w["chosen"] = gr.CheckboxGroup(list(DEFENSES), value=list(DEFENSES), label="Defenses", elem_id="defense-chosen")
        w["limit"] = gr.Number(100, precision=0, label="First N records (0: all)")
        w["k"] = gr.Number(4, precision=0, label="K")
    w["run"] = gr.Button("Run defenses", variant="primary")
    w["message"] = gr.Markdown(elem_id="defense-message")
    w["saved"] = gr.Dropdown(act.choices(), label="Saved results", elem_id="defense-saved")
    w["victim_md"] = gr.Markdown(elem_id="defense-victim")
    w["table"] = gr.Dataframe(defense_table({"defenses": {}}), interactive=False, elem_id="defense-table")
    w["chart"] = gr.Plot(elem_id="defense-chart")
    with gr.Row():
        w["format"] = gr.Radio(list(FORMATS), value="md", label="Export format (md, tex: tables; png: chart; "
                               "csv: the rates as numbers)", elem_id="defense-export-format")
        w["export"] = gr.Button("Export the result", elem_id="defense-export")
    w["exported"] = gr.File(label="Exported file", interactive=False, elem_id="defense-exported", height=90)
    return w


def build(ctx: AppContext) -> None:
    act = Actions(ctx)
    with gr.Tab("Defense", id="defense"):
        w = _layout(ctx, act)
        w["run"].click(act.on_run, [w[n] for n in ("victim", "cleaner", "split", "chosen", "limit", "k")],
                       [w[n] for n in ("message", "saved", "table", "chart", "victim_md")], api_name="defend")
        w["saved"].input(show, [w["saved"]], [w["table"], w["chart"], w["victim_md"]],  # .change misses tuple picks
                         api_name="show_defense")
        w["export"].click(lambda folder, fmt: export_download(folder, fmt, "defense-"), [w["saved"], w["format"]],
                          [w["exported"]], api_name="export_defense")
