"""Defense tab: make a backdoored victim (any corpus, any encoder, the classic and adaptive
triggers), then defend it under FABE's front-door defense, top-1 cleaning, the purifier
baselines and no defense: the paper's table of attacks x defenses (ASR per cell with its 95%
interval and count, clean accuracy per defense and its change) and a heatmap of it, saved next
to the cleaner's run, shown again later and exported for a paper (Markdown, LaTeX, PNG, CSV).
Long work (a victim's training, the embedded victim's first use, the defense) shows its steps
and ETA in the progress bar."""

from __future__ import annotations

from typing import Any

import gradio as gr

from fabe import embedded
from fabe.cleaning.serving import cleaner_sources, resolve_source
from fabe.data.renaming import DEFAULT_BUDGET
from fabe.defense.defenses import (
    DEFENSES,
    default_defense_dir,
    load_defense,
    run_defense,
    saved_defenses,
)
from fabe.defense.labels import LABEL_RULES
from fabe.defense.victim_training import VictimConfig, train_victim
from fabe.defense.victims import load_victim_meta
from fabe.evaluation.report import FORMATS, attack_figure, attack_matrix, victim_line
from fabe.progress import Eta
from fabe.training.modeling import ModelLoadError
from pages import form
from pages.context import AppContext
from pages.exports import export_download


def show(folder: str | None):
    """The saved result's table, chart and the victim's own measure as a sentence."""
    if not folder:
        return None, None, ""
    result = load_defense(folder)
    return attack_matrix(result), attack_figure(result["defenses"]), victim_line(result.get("victim") or {})


def _reporter(progress: gr.Progress, what: str, unit: str):
    """progress(done, total) shown with its counts, pace and ETA."""
    eta = Eta(unit)
    return lambda n, total: progress((n, total), desc=f"{what}: {eta.text(n, total)}", unit=unit)


def _numbers(fields: dict[str, tuple[type, float | None]]) -> list:
    """The Number fields' values as their types, by the Train form's rules (an emptied box is
    named, never silently a default); every problem named at once."""
    typed, problems = form.cast({k: v for k, (_, v) in fields.items()}, {k: t for k, (t, _) in fields.items()})
    if problems:
        raise gr.Error("; ".join(problems))
    return list(typed.values())


class Actions:
    """The tab's event handlers, bound to the app."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def victims(self) -> list[tuple[str, str]]:
        """The embedded victims, then those trained from the page (`RUNS/_victims/NAME`)."""
        made = sorted(p.parent for p in (self.ctx.runs_dir / "_victims").glob("*/victim.json"))
        return [*[(f"{n} ({embedded.describe_victim(n)})", n) for n in embedded.VICTIM_NAMES],
                *[(p.name, str(p)) for p in made]]

    def choices(self) -> list[tuple[str, str]]:
        return [(str(p.relative_to(self.ctx.runs_dir)), str(p)) for p in saved_defenses(self.ctx.runs_dir)]

    def on_train_victim(self, name: str, base: str, corpus: str, label: str, triggers: str, poison_rate: float,
                        target: float, n: float, epochs: float, reference: bool, lora_rank: float = 0,
                        rename_budget: float = DEFAULT_BUDGET, progress=gr.Progress()):
        """Train a victim into `RUNS/_victims/NAME`; its folder becomes the victim defended."""
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise gr.Error("Name the victim (letters, digits, - and _): it is saved as _victims/NAME.")
        rate, target, n, epochs, lora_rank, rename_budget = _numbers({
            "Poison rate": (float, poison_rate), "Target label": (int, target), "Functions": (int, n),
            "Epochs": (float, epochs), "LoRA rank": (int, lora_rank), "adv_rename budget": (int, rename_budget)})
        try:
            cfg = VictimConfig(out=str(self.ctx.runs_dir / "_victims" / name), base=self.ctx.confine_model(base),
                               corpus=corpus if corpus == "generated" else str(self.ctx.confine(corpus)),
                               label=label, triggers=triggers, poison_rate=rate, target_label=target, n=n,
                               epochs=epochs, reference=bool(reference), lora_rank=lora_rank,
                               rename_budget=rename_budget)
            if cfg.base == embedded.EMBEDDED:
                cfg.tokenizer = embedded.resolve(embedded.EMBEDDED, "model")
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None
        progress(0, desc="loading the corpus and poisoning it")
        try:
            out = train_victim(cfg, _reporter(progress, "training the victim", "steps"))
        except (OSError, ValueError, ModelLoadError) as e:
            raise gr.Error(str(e)) from None
        meta = load_victim_meta(out)
        lines = [victim_line(meta["held_out"], f"Victim `{name}`")]
        if "unpoisoned" in meta:
            lines.append(victim_line(meta["unpoisoned"], "Unpoisoned victim trained the same way"))
        return ("\n\n".join([*lines, f"Saved to `{out}`; it is now the victim defended below."]),
                gr.update(choices=self.victims(), value=str(out)))

    def on_run(self, victim: str, cleaner: str | None, split: str, chosen: list[str], limit: float, k: float,
               progress=gr.Progress()):
        if not chosen:
            raise gr.Error("Choose at least one defense.")
        limit, k = _numbers({"First N records": (int, limit), "K": (int, k)})
        try:
            victim = self.ctx.confine_model(victim)
            data = self.ctx.split(split)
            source = resolve_source(self.ctx.confine_model(cleaner)) if cleaner else None
        except (OSError, ValueError) as e:
            raise gr.Error(str(e)) from None
        if embedded.needs_making(victim, "victim"):
            gr.Info("Training the embedded victim first (once, about ten minutes a model on two CPU cores); "
                    "the progress bar shows its steps.")
        out = default_defense_dir(source or victim, data, limit, root=self.ctx.runs_dir / "_defense")
        progress(0, desc="loading the records, the victim and the cleaner; fitting the purifiers")
        try:
            _, folder = run_defense(victim, source, data, chosen, limit, k, out=out,
                                    progress=_reporter(progress, "defending", "records"),
                                    victim_progress=_reporter(progress, "training the embedded victim (once)",
                                                              "steps"))
        except (OSError, ValueError, ModelLoadError) as e:
            raise gr.Error(str(e)) from None
        return (f"Saved to `{folder}`.", gr.update(choices=self.choices(), value=str(folder)), *show(str(folder)))


def _victim_form(w: dict[str, Any]) -> None:
    with gr.Accordion("Make a backdoored victim", open=False, elem_id="victim-form"):
        with gr.Row():
            w["v_name"] = gr.Textbox("my-victim", label="Name (saved as _victims/NAME)", elem_id="victim-name")
            w["v_base"] = gr.Textbox("embedded", label="Base (embedded: a small BERT from scratch; or an encoder "
                                     "folder, e.g. CodeBERT)")
            w["v_corpus"] = gr.Textbox("generated", label="Corpus (generated, Devign .json, CodeXGLUE .jsonl, "
                                       "folder of .c files)", elem_id="victim-corpus")
            w["v_label"] = gr.Dropdown(list(LABEL_RULES), value="corpus", label="Label (corpus: its target field; "
                                       "memory: calls an allocation/copy routine)")
        with gr.Row():  # the attack
            w["v_triggers"] = gr.Textbox("all", label="Triggers (all, adaptive, every, an attack: afraidoor, "
                                         "codepoisoner, badcode, style; or kinds)",
                                         elem_id="victim-triggers")
            w["v_rate"] = gr.Number(0.1, label="Poison rate")
            w["v_target"] = gr.Number(0, precision=0, label="Target label")
            w["v_budget"] = gr.Number(DEFAULT_BUDGET, precision=0, label="adv_rename budget (identifiers per function)",
                                      elem_id="victim-budget")
        with gr.Row():  # the training
            w["v_n"] = gr.Number(12000, precision=0, label="Functions (0: all)", elem_id="victim-n")
            w["v_epochs"] = gr.Number(4, label="Epochs", elem_id="victim-epochs")
            w["v_lora"] = gr.Number(0, precision=0, label="LoRA rank (0: train every weight)", elem_id="victim-lora")
            w["v_reference"] = gr.Checkbox(False, label="Also train an unpoisoned reference",
                                           elem_id="victim-reference")
        w["v_train"] = gr.Button("Train victim", elem_id="victim-train")
        w["v_message"] = gr.Markdown(elem_id="victim-message")


def _layout(ctx: AppContext, act: Actions) -> dict[str, Any]:
    sources = cleaner_sources(ctx.runs_dir)
    w: dict[str, Any] = {}
    _victim_form(w)
    with gr.Row():
        w["victim"] = gr.Dropdown(act.victims(), value=embedded.EMBEDDED, allow_custom_value=True,
                                  label="Victim classifier (or type a classifier folder)", elem_id="defense-victim-source")
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
    w["table"] = gr.Dataframe(attack_matrix({"defenses": {}}), interactive=False, elem_id="defense-table")
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
        w["v_train"].click(act.on_train_victim, [w[n] for n in ("v_name", "v_base", "v_corpus", "v_label", "v_triggers",
                                                                 "v_rate", "v_target", "v_n", "v_epochs",
                                                                 "v_reference", "v_lora", "v_budget")],
                           [w["v_message"], w["victim"]], api_name="train_victim")
        w["run"].click(act.on_run, [w[n] for n in ("victim", "cleaner", "split", "chosen", "limit", "k")],
                       [w[n] for n in ("message", "saved", "table", "chart", "victim_md")], api_name="defend")
        w["saved"].input(show, [w["saved"]], [w["table"], w["chart"], w["victim_md"]],  # .change misses tuple picks
                         api_name="show_defense")
        w["export"].click(lambda folder, fmt: export_download(folder, fmt, "defense-"), [w["saved"], w["format"]],
                          [w["exported"]], api_name="export_defense")
