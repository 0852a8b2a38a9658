"""What the Evaluate and Defense tabs share: a saved result exported as a file the page offers
for download (the library's `fabe.evaluation.report.export_result`, into a fresh temporary
folder that Gradio may serve)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from fabe.evaluation.report import export_result


def export_download(folder: str | None, fmt: str, prefix: str = "") -> str:
    """The result in `folder` as `<prefix><folder name>.<fmt>`; a missing choice or a bad
    result is said in the page."""
    if not folder:
        raise gr.Error("Choose a saved result to export.")
    out = Path(tempfile.mkdtemp(prefix="fabe-export-")) / f"{prefix}{Path(folder).name}.{fmt}"
    try:
        return str(export_result(folder, fmt, out))
    except (OSError, ValueError, RuntimeError) as e:
        raise gr.Error(str(e)) from None
