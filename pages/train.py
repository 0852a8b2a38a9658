"""Train tab: the training form, one section per option group of `fabe.training.config`
(every option, built from its metadata; options that do not apply are hidden), the dataset
check and preview, the command and config.json a launch writes, YAML save/load, and Launch
(every problem of the form shown at once)."""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from fabe.runs import manager as runs
from fabe.runs.processes import gpu_list
from fabe.training.config import (
    CONTROLLERS,
    FIELDS,
    GROUPS,
    PRESETS,
    TrainConfig,
    applies,
    config_problems,
    group_fields,
    preset_values,
    read_config_file,
)
from fabe.training.estimate import format_duration
from pages import form
from pages.context import AppContext

PRESET_CHOICES = [*PRESETS, "custom"]
SET_ELSEWHERE = ("preset", "out")  # the preset picker and the run name
OPTIONS = [name for name in FIELDS if name not in SET_ELSEWHERE]
TYPES = form.field_types(TrainConfig)
GPUS_LABEL = "GPUs (none ticked: CPU)"
NAME_LABEL = "Run name (optional)"
PER_ROW = 4


@dataclass
class TrainTab:
    launched: gr.Textbox  # the id of the run just launched
    from_run: Any  # (run id) -> the form filled with that run's config, and a message
    form_outputs: list[gr.components.Component]  # what `from_run` fills


@dataclass
class Form:
    """The form's widgets: one per option, the preset picker, the GPUs and the run name."""

    options: dict[str, gr.components.Component]
    preset: gr.Dropdown
    gpus: gr.CheckboxGroup
    name: gr.Textbox

    def inputs(self) -> dict[str, gr.components.Component]:
        """Every widget by name, as handlers receive them (`inputs_kwargs`)."""
        return {**self.options, "preset": self.preset, "gpus": self.gpus, "run_name": self.name}


def _section(group: type, values: dict[str, Any]) -> dict[str, gr.components.Component]:
    shown = [f for f in group_fields(group) if f.name in OPTIONS]
    widgets = {}
    with gr.Accordion(group.__doc__.split("\n")[0].rstrip("."), open=True):
        for start in range(0, len(shown), PER_ROW):
            with gr.Row():
                for f in shown[start:start + PER_ROW]:
                    widgets[f.name] = form.widget(f, TYPES[f.name], values[f.name], f"train-{f.name}",
                                                  visible=applies(f.name, values))
    return widgets


def _gpu_choices() -> list[str]:
    return [f"{g['index']}: {g['name']} ({g['memory_total_mb'] // 1024} GB)" for g in gpu_list()]


def gpu_spec(selected: list[str] | None) -> str:
    return ",".join(s.split(":")[0] for s in selected or []) or "cpu"


def _layout(values: dict[str, Any]) -> Form:
    preset = gr.Dropdown(PRESET_CHOICES, value="tiny-cpu", label="Preset", elem_id="train-preset",
                         info="Fills every option; change any of them after.")
    options: dict[str, gr.components.Component] = {}
    for group in GROUPS[1:]:
        options.update(_section(group, values))
    with gr.Row():
        gpus = gr.CheckboxGroup(_gpu_choices(), label=GPUS_LABEL)
        name = gr.Textbox("", label=NAME_LABEL, elem_id="train-run-name")
    return Form(options, preset, gpus, name)


def config_of(values: dict[str, Any]) -> tuple[TrainConfig | None, list[str], dict[str, Any]]:
    """The TrainConfig of the form's option values, or None and every problem with them;
    also the typed values (what could be read of them)."""
    typed, problems = form.cast({n: values[n] for n in OPTIONS}, TYPES)
    typed["preset"] = values["preset"] if values["preset"] in PRESETS else ""
    typed["out"] = ""
    if problems:
        return None, problems, typed
    cfg_problems = config_problems(typed)
    return (None, cfg_problems, typed) if cfg_problems else (TrainConfig(**typed), [], typed)


def confinement_problems(ctx: AppContext, values: dict[str, Any], run_name: str) -> dict[str, str]:
    """The typed paths of a launch (dataset, model, DeepSpeed file, run name) that lie
    outside the app's roots, by field, found before anything is read or made."""
    deepspeed = str(values.get("deepspeed") or "")
    checks = [("data", values.get("data"), ctx.confine_data), ("model", values.get("model"), ctx.confine_model),
              ("deepspeed", deepspeed if deepspeed.endswith(".json") else "", ctx.confine)]
    problems = {}
    for name, value, confine in checks:
        try:
            if value:
                confine(value)
        except ValueError as e:
            problems[name] = f"{name}: {e}"
    if run_name and (Path(run_name).name != run_name or run_name in (".", "..")):
        problems["run name"] = f"run name: {run_name!r} must be a plain folder name inside {ctx.runs_dir}"
    return problems


def launch_problems(ctx: AppContext, values: dict[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """The config, or every problem of the form: values, paths, GPUs, packages, dataset and
    model (those read only where the values they depend on could be read and are allowed)."""
    cfg, problems, typed = config_of(values)
    refused = confinement_problems(ctx, typed, values["run_name"])
    problems = problems + list(refused.values())
    if not problems:
        return cfg, []
    unread = {*refused, *(n for n in OPTIONS if n not in typed)}
    more = runs.check_launch({**TrainConfig().to_dict(), **typed}, gpu_spec(values["gpus"]), skip=unread)
    return None, problems + [p for p in more if p not in problems]


def on_launch(ctx: AppContext, **values: Any) -> tuple[str, str]:
    cfg, problems = launch_problems(ctx, values)
    if cfg is not None:
        try:
            run = runs.launch(cfg, gpu_spec(values["gpus"]), ctx.runs_dir, values["run_name"] or None)
        except (runs.LaunchError, FileExistsError) as e:
            problems = getattr(e, "problems", [str(e)])
    if problems:
        return "**Cannot launch:**\n\n" + "\n".join(f"- `{p}`" for p in problems), ""
    return f"Launched **{run.path.name}** ({run.read_status()['state']}).", run.path.name


def on_preview(ctx: AppContext, **values: Any) -> tuple[str, str, str]:
    """The command a launch runs, the config.json it writes (provenance is added then) and
    the run's plan (memory by part, tokens, s/step)."""
    cfg, problems, _ = config_of(values)
    if cfg is None:
        return "# invalid form:\n" + "\n".join(f"# {p}" for p in problems), "", ""
    launch = runs.launch_plan(cfg, gpu_spec(values["gpus"]), ctx.runs_dir, values["run_name"] or None)
    chosen = {g.split(":")[0] for g in values["gpus"] or []}
    gpus = [g for g in gpu_list() if str(g["index"]) in chosen]
    return (shlex.join(launch.launch["command"]), json.dumps(launch.config_json(), indent=2),
            plan_markdown(cfg, gpus))


def on_estimate(ctx: AppContext, progress=gr.Progress(), **values: Any) -> str:
    """The run's expected duration from a timed probe of its first steps (in a child
    process on the first chosen GPU), with the figures it rests on."""
    from fabe.runs.processes import parse_gpus
    from fabe.training.estimate import probe_in_child

    cfg, problems, typed = config_of(values)
    problems = problems + list(confinement_problems(ctx, typed, values["run_name"]).values())
    if cfg is None or problems:
        return "**Cannot estimate:**\n\n" + "\n".join(f"- `{p}`" for p in problems)
    stages: list[str] = []

    def on_line(line: str) -> None:
        stages.append(line)
        progress((len(stages), 5), desc=f"probe: {line}", unit="stages")

    progress((0, 5), desc="probe: starting", unit="stages")
    try:
        est = probe_in_child(cfg, parse_gpus(gpu_spec(values["gpus"])), on_line=on_line)
    except ValueError as e:
        return f"**Cannot estimate:** {e}"
    gpus = len(values["gpus"] or [])
    ddp = f" With {gpus} GPUs each step takes about as long (DDP adds the gradient exchange)." if gpus > 1 else ""
    return (f"**Expected duration: {format_duration(est.total_s)}** for {est.steps} steps.\n\n"
            f"Basis: {est.basis()}.{ddp}")


def plan_markdown(cfg: TrainConfig, gpus: list[dict]) -> str:
    """The planner's table for both modes, and a warning when a chosen GPU is too small."""
    from fabe.training.planner import GPU_FLOPS, memory_warning, plan, plan_table

    name = next((n for n in GPU_FLOPS if gpus and n.lower() in gpus[0]["name"].lower().replace(" ", "")), "A100")
    try:
        plans = [plan(cfg, mode, name) for mode in ("simple", "full")]
    except ValueError as e:
        return f"**No plan:** {e}"
    warning = memory_warning(plans, gpus)
    head = f"**Warning:** {warning}\n\n" if warning else ""
    assumed = "" if gpus else f"; no GPU ticked: s/step for an {name}"
    return (f"{head}**Plan** (from the model's config alone; P = T = max length / 2, 3 candidates{assumed}; "
            "the peak is the larger of the loss moment and the end of backward, not the sum of the parts):"
            f"\n\n```\n{plan_table(plans)}\n```")


def on_preset(preset: str) -> list[Any]:
    if preset not in PRESETS:
        return [gr.update() for _ in OPTIONS]
    values = preset_values(preset)
    return [values[n] for n in OPTIONS]


def on_save(**values: Any) -> str:
    saved = {"preset": values["preset"] if values["preset"] in PRESETS else "",
             **{n: values[n] for n in OPTIONS}}
    path = Path(tempfile.mkdtemp()) / "train.yaml"
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    return str(path)


def on_load(file: str | None) -> list[Any]:
    if not file:
        return [gr.update() for _ in range(len(OPTIONS) + 1)]
    try:
        values = read_config_file(file)
    except ValueError as e:
        raise gr.Error(str(e)) from e
    merged = {**preset_values(values.get("preset") or ""), **values}
    return [merged.get("preset") or "custom"] + [merged[n] for n in OPTIONS]


def on_from_run(ctx: AppContext, run_id: str | None) -> list[Any]:
    """The form filled with a run's config.json (every option as it trained; preset
    "custom", no run name, so a launch makes a new run), and a message saying so."""
    from fabe.rundir import RunDir
    from fabe.training.run import run_config

    if not run_id:
        raise gr.Error("Pick a run first (Runs tab).")
    try:
        values = run_config(RunDir(ctx.runs_dir / run_id)).to_dict()
    except ValueError as e:
        raise gr.Error(str(e)) from e
    message = f"Form filled from **{run_id}**'s config.json: change what you want to try, then Launch."
    return ["custom", *(values[n] for n in OPTIONS), "", message]


def on_controller(**values: Any) -> list[Any]:
    """Show the options that apply to the chosen fine-tuning, mode and ranking loss."""
    return [gr.update(visible=applies(n, values)) for n in OPTIONS if FIELDS[n].metadata.get("when")]


def check_dataset(ctx: AppContext, path: str) -> tuple[str, list[list[Any]]]:
    """Stats of a dataset file or folder (inside the roots) and its first records, or its
    validation errors."""
    from fabe.data.dataset import (
        DatasetError,
        dataset_stats,
        format_stats,
        load_records,
    )
    from fabe.paths import OutsideRoots

    if not path:
        return "Give a dataset folder or file.", []
    try:
        file = ctx.split(path, "train")
        records = load_records(file)
    except OutsideRoots as e:
        return f"**Dataset refused:** {e}", []
    except DatasetError as e:
        return "**Dataset errors**\n\n" + "\n".join(f"- `{err}`" for err in e.errors[:50]), []
    preview = [[r.id, r.trigger or "none", len(r.output), _clip(r.input), _clip(r.best())] for r in records[:5]]
    return f"**{file}**\n\n```\n{format_stats(dataset_stats(records))}\n```", preview


def _clip(code: str, limit: int = 600) -> str:
    """Code for a preview cell: whole lines, at most `limit` characters."""
    if len(code) <= limit:
        return code
    return code[:code.rfind("\n", 0, limit) + 1 or limit] + "…"


def _dataset_widgets() -> tuple[gr.Button, gr.Markdown, gr.Dataframe]:
    check = gr.Button("Check dataset")
    info = gr.Markdown(elem_id="dataset-info")
    preview = gr.Dataframe(headers=["id", "trigger", "candidates", "input", "best candidate"], interactive=False,
                           wrap=True, elem_id="dataset-preview", column_widths=["9%", "9%", "9%", "36%", "37%"])
    return check, info, preview


def _wire(ctx: AppContext, f: Form, buttons: dict[str, Any], shown: dict[str, Any]) -> None:
    check, info, preview = buttons["check"]
    check.click(partial(check_dataset, ctx), [f.options["data"]], [info, preview], api_name="check_dataset")
    f.preset.change(on_preset, [f.preset], [f.options[n] for n in OPTIONS], api_name="apply_preset")
    dependent = [f.options[n] for n in OPTIONS if FIELDS[n].metadata.get("when")]
    for name in CONTROLLERS:
        f.options[name].change(on_controller, inputs_kwargs={n: f.options[n] for n in CONTROLLERS},
                               outputs=dependent, api_name=f"options_for_{name}")
    buttons["preview"].click(partial(on_preview, ctx), inputs_kwargs=f.inputs(),
                             outputs=[shown["command"], shown["config"], shown["plan"]], api_name="preview_command")
    buttons["estimate"].click(partial(on_estimate, ctx), inputs_kwargs=f.inputs(), outputs=[shown["estimate"]],
                              api_name="estimate_duration")
    buttons["save"].click(on_save, inputs_kwargs={**f.options, "preset": f.preset}, outputs=[shown["saved"]],
                          api_name="save_form")
    buttons["load"].upload(on_load, [buttons["load"]], [f.preset] + [f.options[n] for n in OPTIONS],
                           api_name="load_form")
    buttons["launch"].click(partial(on_launch, ctx), inputs_kwargs=f.inputs(),
                            outputs=[shown["message"], shown["launched"]], api_name="launch")


def build(ctx: AppContext) -> TrainTab:
    with gr.Tab("Train", id="train"):
        f = _layout(preset_values("tiny-cpu"))
        buttons: dict[str, Any] = {"check": _dataset_widgets()}
        with gr.Row():
            buttons["preview"] = gr.Button("Preview command")
            buttons["estimate"] = gr.Button("Estimate duration (timed probe)")
            buttons["save"] = gr.Button("Save form as YAML")
            buttons["load"] = gr.File(label="Load form from YAML", file_types=[".yaml", ".yml", ".json"],
                                      elem_id="form-load")
            buttons["launch"] = gr.Button("Launch", variant="primary")
        shown = {"estimate": gr.Markdown(elem_id="train-estimate"), "plan": gr.Markdown(elem_id="train-plan"),
                 "command": gr.Code(label="Command", language="shell", interactive=False, elem_id="train-command"),
                 "config": gr.Code(label="config.json (what the run trains from)", language="json",
                                   interactive=False, elem_id="train-config"),
                 "saved": gr.File(label="Form YAML", interactive=False, elem_id="form-yaml", height=90),
                 "message": gr.Markdown(elem_id="launch-message"), "launched": gr.Textbox(visible=False)}
        _wire(ctx, f, buttons, shown)
    return TrainTab(launched=shown["launched"], from_run=partial(on_from_run, ctx),
                    form_outputs=[f.preset, *(f.options[n] for n in OPTIONS), f.name, shown["message"]])
