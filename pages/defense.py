"""Defense tab: a victim classifier under FABE's front-door defense, top-1 cleaning, the
purifier baselines and no defense; ASR and clean accuracy per defense and trigger kind as a
table and a grouped bar chart, saved next to the cleaner's run and shown again later."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from fabe.cleaning.serving import cleaner_sources, resolve_source
from fabe.defense.defenses import (
    DEFENSES,
    default_defense_dir,
    load_defense,
    run_defense,
    saved_defenses,
)
from fabe.training.modeling import ModelLoadError
from pages.context import AppContext
from pages.plots import defense_figure


def show(folder: str | None):
    if not folder:
        return None, None, ""
    result = load_defense(folder)
    rows = [{"defense": name, **r["overall"]} for name, r in result["defenses"].items()]
    victim = result.get("victim") or {}
    head = (f"Victim before defense (its own held-out measure): clean accuracy {victim.get('clean_accuracy')}, "
            f"ASR {victim.get('asr')}." if victim else "")
    return pd.DataFrame(rows), defense_figure(result["defenses"]), head


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
        out = default_defense_dir(source or victim, data, int(limit), root=self.ctx.runs_dir / "_defense")
        try:
            _, folder = run_defense(victim, source, data, chosen, int(limit), int(k), out=out,
                                    progress=lambda n, total: progress((n, total), desc="defending", unit="records"))
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
    w["victim_md"] = gr.Markdown()
    w["table"] = gr.Dataframe(interactive=False, elem_id="defense-table")
    w["chart"] = gr.Plot(elem_id="defense-chart")
    return w


def build(ctx: AppContext) -> None:
    act = Actions(ctx)
    with gr.Tab("Defense", id="defense"):
        w = _layout(ctx, act)
        w["run"].click(act.on_run, [w[n] for n in ("victim", "cleaner", "split", "chosen", "limit", "k")],
                       [w[n] for n in ("message", "saved", "table", "chart", "victim_md")], api_name="defend")
        w["saved"].input(show, [w["saved"]], [w["table"], w["chart"], w["victim_md"]])  # .change misses tuple picks

