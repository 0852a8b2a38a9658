"""Widgets made from a config dataclass's fields, and typed values read back from them.

Each field's metadata (`fabe.training.config.option`) gives the widget its label, help and
choices, so an option added to the config appears in the form without touching the page.
Handlers get the form's values by name (Gradio's `inputs_kwargs`), which also names the
parameters of the page's API after the options.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import gradio as gr

CASTS = {bool: bool, int: int, float: float, str: str}


def field_types(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls)


def widget(f: dataclasses.Field, kind: type, value: Any, elem_id: str, visible: bool = True) -> gr.components.Component:
    """The widget of one option: a checkbox, a dropdown of its choices (or of suggestions
    that also accept other values), or a number or text box."""
    md = f.metadata
    common = dict(label=md["label"], info=md["help"], elem_id=elem_id, visible=visible)
    if kind is bool:
        return gr.Checkbox(value, **common)
    if "choices" in md:
        return gr.Dropdown(md["choices"], value=value, **common)
    if "suggest" in md:
        return gr.Dropdown(list(md["suggest"]), value=value, allow_custom_value=True, **common)
    if kind in (int, float):
        return gr.Number(value, precision=0 if kind is int else None, **common)
    return gr.Textbox(value, **common)


def cast(values: dict[str, Any], types: dict[str, type]) -> tuple[dict[str, Any], list[str]]:
    """Form values as the option types, and a problem for each that is not one. An empty
    number box is a problem, never silently a default."""
    out: dict[str, Any] = {}
    problems = []
    for name, value in values.items():
        kind = types[name]
        if kind is str:
            out[name] = "" if value is None else str(value)
        elif value is None or value == "":
            problems.append(f"{name}: give a value")
        else:
            try:
                typed = float(value) if kind is int else CASTS[kind](value)
            except (TypeError, ValueError):
                problems.append(f"{name}: invalid value {value!r}")
                continue
            if kind is int and typed != int(typed):
                problems.append(f"{name}: invalid value {value!r} (a whole number)")
                continue
            out[name] = int(typed) if kind is int else typed
    return out, problems
