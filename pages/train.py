"""Train tab: the training form, dataset check and preview, command preview, YAML save/load,
and Launch (validated first, every problem shown at once)."""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from fabe.runs import manager as runs
from fabe.training.run import PRESETS, TrainConfig, read_config_file
from pages.context import AppContext

CASTS = {"int": int, "float": float, "bool": bool, "str": str}
PRESET_CHOICES = ["tiny-cpu", "deepseek-1.3b", "deepseek-6.7b", "custom"]


@dataclass
class TrainTab:
    launched: gr.Textbox  # the id of the run just launched


DATA_LABEL = "Dataset (folder with train/valid/test, a .jsonl/.json file, or embedded: 5,000 generated)"


def _defaults(preset: str) -> dict[str, Any]:
    values = asdict(TrainConfig(**PRESETS.get(preset, {})))
    values["preset"] = preset if preset in PRESETS else ""
    return values


def _widgets(defaults: dict[str, Any]) -> dict[str, gr.components.Component]:
    """One widget per TrainConfig field the form offers, named as the field."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row():
        w["model"] = gr.Textbox(defaults["model"], label="Model (embedded, a folder or a hub id)")
        w["finetune"] = gr.Radio(["auto", "full", "lora"], value=defaults["finetune"], label="Fine-tuning")
        w["precision"] = gr.Dropdown(["auto", "fp32", "bf16", "fp16"], value=defaults["precision"], label="Precision")
    with gr.Row():
        w["mode"] = gr.Radio(["simple", "full"], value=defaults["mode"], label="Mode")
        w["alpha"] = gr.Number(defaults["alpha"], label="alpha (MLE weight)")
        w["beta"] = gr.Number(defaults["beta"], label="beta (ranking weight)")
        w["rank_loss"] = gr.Dropdown(["listmle", "margin"], value=defaults["rank_loss"], label="Ranking loss")
    with gr.Row():
        w["lora_r"] = gr.Number(defaults["lora_r"], precision=0, label="LoRA r")
        w["lora_alpha"] = gr.Number(defaults["lora_alpha"], precision=0, label="LoRA alpha")
        w["lora_dropout"] = gr.Number(defaults["lora_dropout"], label="LoRA dropout")
        w["lora_targets"] = gr.Textbox(defaults["lora_targets"], label="LoRA targets")
    with gr.Row():
        w["learning_rate"] = gr.Number(defaults["learning_rate"], label="Learning rate")
        w["num_train_epochs"] = gr.Number(defaults["num_train_epochs"], label="Epochs")
        w["max_steps"] = gr.Number(defaults["max_steps"], precision=0, label="Max steps (-1: epochs)")
        w["warmup_steps"] = gr.Number(defaults["warmup_steps"], precision=0, label="Warmup steps")
    with gr.Row():
        w["batch_size"] = gr.Number(defaults["batch_size"], precision=0, label="Batch size")
        w["gradient_accumulation_steps"] = gr.Number(defaults["gradient_accumulation_steps"], precision=0,
                                                     label="Gradient accumulation")
        w["max_length"] = gr.Number(defaults["max_length"], precision=0, label="Max length")
        w["gradient_checkpointing"] = gr.Checkbox(defaults["gradient_checkpointing"],
                                                  label="Gradient checkpointing")
        w["deepspeed"] = gr.Dropdown(["", "zero2", "zero3"], value=defaults["deepspeed"], allow_custom_value=True,
                                     label="DeepSpeed ZeRO (several GPUs; empty: DDP; or a .json)")
    with gr.Row():
        w["logging_steps"] = gr.Number(defaults["logging_steps"], precision=0, label="Logging steps")
        w["eval_steps"] = gr.Number(defaults["eval_steps"], precision=0, label="Eval steps")
        w["save_steps"] = gr.Number(defaults["save_steps"], precision=0, label="Save steps")
        w["eval_limit"] = gr.Number(defaults["eval_limit"], precision=0, label="Eval records (0: all)")
        w["trust_remote_code"] = gr.Checkbox(defaults["trust_remote_code"], elem_id="trust-remote-code",
                                             label="Trust remote code (runs Python shipped with this model)")
    return w


def to_config(values: dict[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """A TrainConfig from form values, or every problem with them."""
    # f.type is the annotation's text, or the type itself once HfArgumentParser has resolved it
    types = {f.name: CASTS.get(getattr(f.type, "__name__", str(f.type)), str) for f in fields(TrainConfig)}
    clean: dict[str, Any] = {}
    problems = []
    for name, value in values.items():
        try:
            clean[name] = types[name](value) if value is not None and value != "" else \
                TrainConfig.__dataclass_fields__[name].default
        except (TypeError, ValueError):
            problems.append(f"{name}: invalid value {value!r}")
    if problems:
        return None, problems
    try:
        return TrainConfig(**clean), []
    except ValueError as e:
        return None, str(e).split("; ")


def gpu_spec(selected: list[str]) -> str:
    return ",".join(s.split(":")[0] for s in selected) or "cpu"


def _gpu_choices() -> list[str]:
    return [f"{g['index']}: {g['name']} ({g['memory_total_mb'] // 1024} GB)" for g in runs.gpu_list()]


def check_dataset(path: str, roots: list[Path]) -> tuple[str, list[list[Any]]]:
    """Stats of a dataset file or folder (inside `roots`) and its first records, or its
    validation errors."""
    from fabe.data.builder import resolve_data
    from fabe.data.dataset import DatasetError, dataset_stats, find_split_files, format_stats, load_records
    from fabe.paths import OutsideRoots, confine_data

    if not path:
        return "Give a dataset folder or file.", []
    try:
        p = Path(resolve_data(confine_data(path, roots)))
    except OutsideRoots as e:
        return f"**Dataset refused:** {e}", []
    try:
        file = find_split_files(p)["train"] if p.is_dir() else p
        records = load_records(file)
    except DatasetError as e:
        return "**Dataset errors**\n\n" + "\n".join(f"- `{err}`" for err in e.errors[:50]), []
    preview = [[r.id, r.trigger or "none", len(r.output), r.input[:240], r.best()[:240]] for r in records[:5]]
    return f"**{file}**\n\n```\n{format_stats(dataset_stats(records))}\n```", preview


def confinement_problems(ctx: AppContext, cfg: TrainConfig, run_name: str) -> list[str]:
    """The typed paths of a launch (dataset, model, DeepSpeed file, run folder) that lie
    outside the app's roots, checked before anything is read or the run folder is made."""
    checks = [("data", cfg.data, ctx.confine_data), ("model", cfg.model, ctx.confine_model),
              ("deepspeed", cfg.deepspeed if cfg.deepspeed.endswith(".json") else "", ctx.confine)]
    problems = []
    for name, value, confine in checks:
        try:
            if value:
                confine(value)
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if run_name and (Path(run_name).name != run_name or run_name in (".", "..")):
        problems.append(f"run name: {run_name!r} must be a plain folder name inside {ctx.runs_dir}")
    return problems


def build(ctx: AppContext) -> TrainTab:
    with gr.Tab("Train", id="train"):
        with gr.Row():
            preset = gr.Dropdown(PRESET_CHOICES, value="tiny-cpu", label="Preset")
            data = gr.Textbox("embedded", label=DATA_LABEL)
            check = gr.Button("Check dataset")
        data_info = gr.Markdown(elem_id="dataset-info")
        data_preview = gr.Dataframe(headers=["id", "trigger", "candidates", "input", "best candidate"],
                                    interactive=False, wrap=True, elem_id="dataset-preview",
                                    column_widths=["9%", "9%", "9%", "36%", "37%"])
        widgets = _widgets(_defaults("tiny-cpu"))
        with gr.Row():
            gpus = gr.CheckboxGroup(_gpu_choices(), label="GPUs (none ticked: CPU)")
            name = gr.Textbox(label="Run name (optional)")
        with gr.Row():
            preview_btn = gr.Button("Preview command")
            save_btn = gr.Button("Save form as YAML")
            load_file = gr.File(label="Load form from YAML", file_types=[".yaml", ".yml", ".json"],
                                elem_id="form-load")
            launch_btn = gr.Button("Launch", variant="primary")
        command = gr.Code(label="Command", language="shell", interactive=False)
        saved = gr.File(label="Form YAML", interactive=False, elem_id="form-yaml")
        message = gr.Markdown(elem_id="launch-message")
        launched = gr.Textbox(visible=False)
        names = list(widgets)
        inputs = [data, preset, *widgets.values()]

        def values_of(data_v: str, preset_v: str, *rest: Any) -> dict[str, Any]:
            return {"data": data_v, "preset": preset_v if preset_v in PRESETS else "", **dict(zip(names, rest))}

        def on_preset(preset_v: str):
            if preset_v not in PRESETS:
                return [gr.update() for _ in names]
            values = _defaults(preset_v)
            return [values[n] for n in names]

        def on_preview(*args: Any) -> str:
            cfg, problems = to_config(values_of(*args[:-2]))
            if cfg is None:
                return "# invalid form:\n" + "\n".join(f"# {p}" for p in problems)
            spec = gpu_spec(args[-2])
            run_path = ctx.runs_dir / (args[-1] or "<run-id>")
            return shlex.join(runs.train_command(cfg, run_path, runs.parse_gpus(spec)))

        def on_save(*args: Any) -> str:
            values = values_of(*args)
            path = Path(tempfile.mkdtemp()) / "train.yaml"
            path.write_text(yaml.safe_dump(values, sort_keys=False))
            return str(path)

        def on_load(file: str | None):
            if not file:
                return [gr.update() for _ in inputs]
            try:
                values = read_config_file(file)
            except ValueError as e:
                raise gr.Error(str(e)) from e
            merged = {**_defaults(values.get("preset") or "custom"), **values}
            return [merged.get("data", ""), merged.get("preset") or "custom"] + [merged[n] for n in names]

        def on_launch(*args: Any) -> tuple[str, str]:
            cfg, problems = to_config(values_of(*args[:-2]))
            spec = gpu_spec(args[-2])
            if cfg is not None:
                problems = confinement_problems(ctx, cfg, args[-1]) or runs.check_launch(cfg, spec)
            if problems:
                return "**Cannot launch:**\n\n" + "\n".join(f"- `{p}`" for p in problems), ""
            run = runs.launch(cfg, spec, ctx.runs_dir, args[-1] or None)
            return f"Launched **{run.path.name}** ({run.read_status()['state']}).", run.path.name

        check.click(lambda path: check_dataset(path, ctx.roots), [data], [data_info, data_preview], api_name="check_dataset")
        preset.change(on_preset, [preset], list(widgets.values()), api_name="apply_preset")
        preview_btn.click(on_preview, inputs + [gpus, name], [command], api_name="preview_command")
        save_btn.click(on_save, inputs, [saved], api_name="save_form")
        load_file.upload(on_load, [load_file], inputs, api_name="load_form")
        launch_btn.click(on_launch, inputs + [gpus, name], [message, launched], api_name="launch")
    return TrainTab(launched=launched)
