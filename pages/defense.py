"""Defense tab: a victim classifier under FABE's front-door defense, top-1 cleaning, the
purifier baselines and no defense; ASR and clean accuracy per defense and trigger kind as a
table and a grouped bar chart, saved next to the cleaner's run and shown again later."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from fabe.defense.defenses import DEFENSES, default_defense_dir, run_defense
from fabe.training.modeling import ModelLoadError
from fabe.cleaning.serving import cleaner_sources, resolve_source
from pages.context import AppContext
from pages.plots import defense_figure


def saved_defenses(root: Path) -> list[tuple[str, str]]:
    found = sorted(root.glob("**/defense.json"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return [(str(p.parent.relative_to(root)), str(p.parent)) for p in found]


def show(folder: str | None):
    import json

    if not folder:
        return None, None, ""
    result = json.loads((Path(folder) / "defense.json").read_text())
    rows = [{"defense": name, **r["overall"]} for name, r in result["defenses"].items()]
    victim = result.get("victim") or {}
    head = (f"Victim before defense (its own held-out measure): clean accuracy {victim.get('clean_accuracy')}, "
            f"ASR {victim.get('asr')}." if victim else "")
    return pd.DataFrame(rows), defense_figure(result["defenses"]), head


def build(ctx: AppContext) -> None:
    sources = cleaner_sources(ctx.runs_dir)
    with gr.Tab("Defense", id="defense"):
        with gr.Row():
            victim = gr.Textbox("embedded", label="Victim classifier (a folder, or embedded: trained on first use)")
            cleaner = gr.Dropdown(sources, value=sources[0][1] if sources else None, allow_custom_value=True,
                                  label="Cleaner")
        with gr.Row():
            split = gr.Textbox("embedded", label="Split (.jsonl/.json; embedded: its test split)")
            chosen = gr.CheckboxGroup(list(DEFENSES), value=list(DEFENSES), label="Defenses")
            limit = gr.Number(100, precision=0, label="First N records (0: all)")
            k = gr.Number(4, precision=0, label="K")
        run_btn = gr.Button("Run defenses", variant="primary")
        message = gr.Markdown(elem_id="defense-message")
        saved = gr.Dropdown(saved_defenses(ctx.runs_dir), label="Saved results", elem_id="defense-saved")
        victim_md = gr.Markdown()
        table = gr.Dataframe(interactive=False, elem_id="defense-table")
        chart = gr.Plot(elem_id="defense-chart")

        def on_run(victim_v: str, cleaner_v: str | None, split_v: str, chosen_v: list[str], limit_v: float,
                   k_v: float, progress=gr.Progress()):
            from fabe.data.builder import resolve_data

            if not chosen_v:
                raise gr.Error("Choose at least one defense.")
            try:
                victim_v = ctx.confine_model(victim_v)
                data = Path(resolve_data(ctx.confine_data(split_v)))
                source = resolve_source(ctx.confine_model(cleaner_v)) if cleaner_v else None
            except ValueError as e:
                raise gr.Error(str(e)) from None
            data = data / "test.jsonl" if data.is_dir() else data
            out = default_defense_dir(source or victim_v, data, int(limit_v), root=ctx.runs_dir / "_defense")
            try:
                _, folder = run_defense(victim_v, source, data, chosen_v, int(limit_v), int(k_v), out=out,
                                        progress=lambda n, total: progress((n, total), desc="defending",
                                                                           unit="records"))
            except (OSError, ValueError, ModelLoadError) as e:
                raise gr.Error(str(e)) from None
            return (f"Saved to `{folder}`.", gr.update(choices=saved_defenses(ctx.runs_dir), value=str(folder)),
                    *show(str(folder)))

        run_btn.click(on_run, [victim, cleaner, split, chosen, limit, k], [message, saved, table, chart, victim_md],
                      api_name="defend")
        saved.input(show, [saved], [table, chart, victim_md])  # .change misses a pick among tuple choices
