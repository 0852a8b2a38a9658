"""Clean tab: load a cleaner (the shipped one, a run's final model or a checkpoint, or a
model folder), paste or upload code or pick a dataset record, and see the K ranked
candidates, with the input beside any candidate as a line diff (removed lines marked, the
trigger highlighted). Also: unload, cancel, download, and export a LoRA run merged."""

from __future__ import annotations

import html
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from fabe.cleaning.cleaner import DECODINGS, Cancelled, CleanConfig, InputTooLong, check_code, read_code_file
from fabe.evaluation.metrics import lines_changed
from fabe.training.modeling import ModelLoadError
from fabe.cleaning.report import diff_rows, trigger_spans
from fabe.cleaning.serving import cleaner_sources
from pages.context import AppContext

TABLE = ["rank", "score", "weight", "parses", "triggers left", "lines changed"]
CSS = """
#clean-diff table { border-collapse: collapse; width: 100%; font-family: monospace; font-size: 13px; }
#clean-diff td { padding: 0 6px; white-space: pre; vertical-align: top; }
#clean-diff td.ln { color: #888; text-align: right; width: 2.5em; user-select: none; }
#clean-diff tr[data-op=delete] td.left, #clean-diff tr[data-op=replace] td.left { background: #fdd; }
#clean-diff tr[data-op=insert] td.right, #clean-diff tr[data-op=replace] td.right { background: #dfd; }
#clean-diff mark.trigger { background: #f59e0b; color: #000; font-weight: bold; }
"""


@dataclass
class CleanTab:
    show_record: Any  # (split path, record id) -> the outputs that show it in this tab
    cancel_session: Any  # gr.Request -> cancels that session's generation (for demo.unload)


def _marked_lines(code: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], list[str]]:
    """Each line of `code` as HTML with trigger spans wrapped in <mark>, and each line's
    trigger kinds ("" when none)."""
    out, kinds, offset = [], [], 0
    for line in code.split("\n"):
        end = offset + len(line)
        pieces, at, found = [], offset, []
        for s, e, kind in spans:
            s, e = max(s, offset), min(e, end)
            if s >= e:
                continue
            pieces += [html.escape(code[at:s]), f"<mark class='trigger' title='{kind}'>{html.escape(code[s:e])}</mark>"]
            at, found = e, found + [kind]
        pieces.append(html.escape(code[at:end]))
        out.append("".join(pieces))
        kinds.append(",".join(sorted(set(found))))
        offset = end + 1
    return out, kinds


def diff_html(poisoned: str, cleaned: str, spans: list[tuple[int, int, str]]) -> str:
    """The input and a candidate side by side: removed lines red, added lines green, the
    trigger marked; rows carry data-op and data-trigger for scripts and tests."""
    left, kinds = _marked_lines(poisoned, spans)
    right = [html.escape(line) for line in cleaned.split("\n")]
    rows = ["<table><tr><th></th><th>poisoned input</th><th></th><th>candidate</th></tr>"]
    for r in diff_rows(poisoned, cleaned):
        a = left[r.left] if r.left is not None else ""
        b = right[r.right] if r.right is not None else ""
        trig = kinds[r.left] if r.left is not None else ""
        rows.append(f"<tr data-op='{r.op}' data-trigger='{trig}'>"
                    f"<td class='ln'>{'' if r.left is None else r.left + 1}</td><td class='left'>{a}</td>"
                    f"<td class='ln'>{'' if r.right is None else r.right + 1}</td><td class='right'>{b}</td></tr>")
    return "\n".join(rows) + "</table>"


def _download(code: str, rank: int) -> str:
    path = Path(tempfile.mkdtemp(prefix="fabe-clean-")) / f"cleaned-rank{rank}.c"
    path.write_text(code)
    return str(path)


def _show(state: dict, rank: int | None):
    """Diff, code and download of candidate `rank` (the top one when None)."""
    cands = state.get("candidates") or []
    if not cands:
        return "", "", None
    cand = next((c for c in cands if c["rank"] == rank), cands[0])
    spans = trigger_spans(state["input"], state.get("edits"))
    return diff_html(state["input"], cand["code"], spans), cand["code"], _download(cand["code"], cand["rank"])


def _records(ctx: AppContext, split: str):
    """The records of a split typed in the page; one outside the app's roots is refused unread."""
    from fabe.data.builder import resolve_data
    from fabe.data.dataset import load_records

    try:
        path = Path(resolve_data(ctx.confine_data(split)))
        return load_records(path / "test.jsonl" if path.is_dir() else path)
    except (OSError, ValueError) as e:
        raise gr.Error(str(e)) from None


def build(ctx: AppContext) -> CleanTab:
    sources = cleaner_sources(ctx.runs_dir)
    with gr.Tab("Clean", id="clean"):
        with gr.Row():
            source = gr.Dropdown([(label, src) for label, src in sources], value=sources[0][1] if sources else None,
                                 allow_custom_value=True, elem_id="clean-source", scale=4,
                                 label="Cleaner (shipped, a run's final model or checkpoint, or a model folder)")
            refresh = gr.Button("Refresh list", scale=1)
            load_btn = gr.Button("Load", scale=1)
            unload_btn = gr.Button("Unload", scale=1)
        loaded = gr.Markdown(elem_id="clean-loaded")
        with gr.Tabs():
            with gr.Tab("Paste or upload"):
                upload = gr.File(label="Upload a .c file", file_types=[".c", ".h", ".txt"], height=90)
            with gr.Tab("Pick a dataset record"):
                with gr.Row():
                    split = gr.Textbox("embedded", label="Split (.jsonl/.json; a dataset folder or embedded: its test split)")
                    list_btn = gr.Button("List records")
                record = gr.Dropdown(label="Record", choices=[], elem_id="clean-record")
                reference = gr.Code(language="c", label="Reference clean code", interactive=False)
        record_info = gr.Markdown(elem_id="clean-record-info")
        code = gr.Code(language="c", label="Poisoned code", interactive=True, elem_id="clean-input")
        with gr.Row():
            k = gr.Slider(1, 8, value=4, step=1, label="K candidates")
            diversity = gr.Slider(0.0, 2.0, value=0.5, step=0.1, label="Diversity penalty (diverse beam)")
            decoding = gr.Radio(list(DECODINGS), value="diverse_beam", label="Decoding")
            max_new = gr.Number(0, precision=0, label="Max new tokens (0: 1.25 x input + 16)")
        with gr.Row():
            clean_btn = gr.Button("Clean", variant="primary")
            cancel_btn = gr.Button("Cancel")
        message = gr.Markdown(elem_id="clean-message")
        table = gr.Dataframe(headers=TABLE, interactive=False, elem_id="candidates-table")
        pick = gr.Radio(label="Candidate shown in the diff", choices=[], elem_id="candidate-pick")
        diff = gr.HTML(elem_id="clean-diff")
        with gr.Row():
            cleaned = gr.Code(language="c", label="Chosen candidate (copy button at its top right)",
                              interactive=False, elem_id="clean-output")
            download = gr.File(label="Download the chosen candidate", interactive=False, elem_id="clean-download")
        with gr.Accordion("Export: merge a LoRA cleaner into its base model (safetensors)", open=False):
            with gr.Row():
                export_to = gr.Textbox(label="New folder for the exported model")
                export_btn = gr.Button("Export")
            export_msg = gr.Markdown()
        state = gr.State({"input": "", "candidates": [], "edits": None})
        edits = gr.State(None)

        def on_refresh(current: str | None):
            found = cleaner_sources(ctx.runs_dir)
            values = [s for _, s in found]
            return gr.update(choices=found, value=current if current else (values[0] if values else None))

        def on_load(src: str | None) -> str:
            if not src:
                return "Pick a cleaner first."
            try:
                cleaner = ctx.cleaners.load(ctx.confine_model(src))
            except (OSError, ValueError, ModelLoadError) as e:
                return f"**Cannot load** `{src}`: {e}"
            params = sum(p.numel() for p in cleaner.model.parameters()) / 1e6
            return f"Loaded `{src}` ({params:.1f}M parameters, {cleaner.device}). Loaded now: {len(ctx.cleaners.loaded())}."

        def on_unload(src: str | None) -> str:
            if src and ctx.cleaners.unload(src):
                return f"Unloaded `{src}`; its memory is freed."
            return "That cleaner is not loaded."

        def on_upload(file: str | None):
            if not file:
                return gr.update(), None
            try:
                return read_code_file(file, Path(file).name), None
            except ValueError as e:
                raise gr.Error(str(e)) from None

        def on_list(split_v: str):
            records = _records(ctx, split_v)
            ids = [r.id for r in records[:2000]]
            return gr.update(choices=ids, value=ids[0] if ids else None)

        def on_record(split_v: str, record_id: str | None):
            if not record_id:
                return gr.update(), "", "", None
            rec = next(r for r in _records(ctx, split_v) if r.id == record_id)
            kind = f"trigger **{rec.trigger}**" if rec.trigger else "**unpoisoned** (must come back unchanged)"
            return rec.input, f"`{rec.id}`: {kind}", rec.clean or "", rec.edits

        def on_clean(src: str | None, code_v: str, k_v: float, div_v: float, dec_v: str, max_v: float,
                     edits_v: list | None, request: gr.Request, progress=gr.Progress()):
            none = ({"input": code_v, "candidates": [], "edits": None}, [], gr.update(choices=[], value=None),
                    "", "", None)
            if not src:
                return ("Pick and load a cleaner first.", *none)
            if not (code_v or "").strip():
                return ("Paste some C code first (the input is empty).", *none)
            try:
                check_code(code_v)
                cfg = CleanConfig(k=int(k_v), diversity=float(div_v), decoding=dec_v, max_new_tokens=int(max_v or 0))
            except ValueError as e:
                return (f"**Invalid input or settings:** {e}", *none)
            try:
                model = ctx.confine_model(src)
            except ValueError as e:
                return (f"**Cannot load** `{src}`: {e}", *none)
            cancel = threading.Event()
            ctx.cancels[request.session_hash] = cancel
            progress(0, desc="waiting for the model (one generation per model at a time)")
            try:
                with ctx.cleaners.using(model) as cleaner:
                    cands = cleaner.clean_batch(
                        [code_v], cfg, cancel=cancel,
                        on_token=lambda n, budget: progress((n, budget), desc="decoding", unit="tokens"))[0]
            except InputTooLong as e:
                return (f"**Input too long:** {e}. Nothing was cleaned (no silent truncation).", *none)
            except ModelLoadError as e:
                return (f"**Cannot load** `{src}`: {e}", *none)
            except Cancelled:
                return ("Cancelled.", *none)
            finally:
                ctx.cancels.pop(request.session_hash, None)
            from fabe.data import cparse

            note = "" if cparse.parses(code_v) else " (the input does not parse as C; cleaned anyway)"
            st = {"input": code_v, "candidates": [c.to_dict() for c in cands], "edits": edits_v}
            rows = [[c.rank, round(c.score, 4), round(c.weight, 3), c.parses, ", ".join(c.triggers_left) or "-",
                     lines_changed(code_v, c.code)] for c in cands]
            return (f"{len(cands)} candidates from `{src}`{note}.", st, rows,
                    gr.update(choices=[c.rank for c in cands], value=1), *_show(st, 1))

        def cancel_session(request: gr.Request) -> None:
            """Stop the session's generation; also run when its page closes, so a dropped
            browser does not keep the model busy decoding for nobody."""
            event = ctx.cancels.get(request.session_hash)
            if event is not None:
                event.set()

        def on_cancel(request: gr.Request) -> str:
            if request.session_hash not in ctx.cancels:
                return "Nothing to cancel."
            cancel_session(request)
            return "Cancelling…"

        def on_export(src: str | None, out: str) -> str:
            from fabe.cleaning.export import export_model
            from fabe.cleaning.serving import resolve_source

            if not src or not out:
                return "Pick a cleaner and give a new folder."
            try:
                return f"Exported to `{export_model(resolve_source(ctx.confine_model(src)), ctx.confine(out))}`."
            except (OSError, ValueError, ModelLoadError) as e:
                return f"**Export failed:** {e}"

        refresh.click(on_refresh, [source], [source])
        load_btn.click(on_load, [source], [loaded], api_name="load_cleaner")
        unload_btn.click(on_unload, [source], [loaded], api_name="unload_cleaner")
        upload.upload(on_upload, [upload], [code, edits])
        list_btn.click(on_list, [split], [record])
        record.change(on_record, [split, record], [code, record_info, reference, edits])
        run = clean_btn.click(on_clean, [source, code, k, diversity, decoding, max_new, edits],
                              [message, state, table, pick, diff, cleaned, download], api_name="clean")
        cancel_btn.click(on_cancel, None, [message], cancels=[run])
        pick.change(_show, [state, pick], [diff, cleaned, download])
        export_btn.click(on_export, [source, export_to], [export_msg], api_name="export")

        def show_record(split_v: str, record_id: str):
            return split_v, gr.update(choices=[record_id], value=record_id)

        return CleanTab(show_record=(show_record, [split, record]), cancel_session=cancel_session)
