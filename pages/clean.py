"""Clean tab: load a cleaner (the shipped one, a run's final model or a checkpoint, or a
model folder), paste or upload code or pick a dataset record, and see the K ranked
candidates, with the input beside any candidate as a line diff (removed lines marked, the
trigger highlighted). A record opened from the Evaluate tab shows the candidates that
evaluation saved. Also: unload, cancel, download, and export a LoRA run merged.

A picked record's trigger offsets, reference and title are kept with the code they belong
to, and used only while the input is still that code: pasted or typed code is judged on its
own (its triggers found by the detector)."""

from __future__ import annotations

import html
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from fabe.cleaning.cleaner import (
    DECODINGS,
    Cancelled,
    Candidate,
    CleanConfig,
    InputTooLong,
    check_code,
    read_code_file,
)
from fabe.cleaning.report import diff_rows, trigger_spans
from fabe.cleaning.serving import cleaner_sources, resolve_source
from fabe.cleaning.trust import mark_reference
from fabe.evaluation.metrics import lines_changed
from fabe.training.modeling import ModelLoadError
from pages.context import AppContext

TABLE = ["rank", "copies", "weight", "score", "parses", "keeps signature", "input kept", "triggers left",
         "is the input", "matches reference", "lines changed"]
MAX_LISTED = 2000  # records offered in the picker: more makes the dropdown slow to open
VERDICT_COLORS = {"confident": "#15803d", "uncertain": "#b45309", "failed": "#b91c1c"}
CSS = """
#clean-diff .diff-box { max-height: 70vh; overflow: auto; }
#clean-diff table { border-collapse: collapse; width: 100%; table-layout: fixed; font-family: monospace;
                    font-size: 13px; }
#clean-diff td { padding: 0 6px; white-space: pre-wrap; overflow-wrap: anywhere; vertical-align: top; }
#clean-diff th.ln, #clean-diff td.ln { color: #888; text-align: right; width: 3em; user-select: none; }
#clean-diff tr[data-op=delete] td.left, #clean-diff tr[data-op=replace] td.left { background: #fdd; }
#clean-diff tr[data-op=insert] td.right, #clean-diff tr[data-op=replace] td.right { background: #dfd; }
#clean-diff mark.trigger { background: #f59e0b; color: #000; font-weight: bold; }
"""


@dataclass
class CleanTab:
    show_record: Any  # (handler(eval folder, split, record id, abstain), [abstain], its outputs)
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
    trigger marked; long lines wrap inside their half and the box scrolls; rows carry
    data-op and data-trigger for scripts and tests."""
    left, kinds = _marked_lines(poisoned, spans)
    right = [html.escape(line) for line in cleaned.split("\n")]
    rows = ["<div class='diff-box'><table><tr><th class='ln'></th><th>input</th><th class='ln'></th>"
            "<th>candidate</th></tr>"]
    for r in diff_rows(poisoned, cleaned):
        a = left[r.left] if r.left is not None else ""
        b = right[r.right] if r.right is not None else ""
        trig = kinds[r.left] if r.left is not None else ""
        rows.append(f"<tr data-op='{r.op}' data-trigger='{trig}'>"
                    f"<td class='ln'>{'' if r.left is None else r.left + 1}</td><td class='left'>{a}</td>"
                    f"<td class='ln'>{'' if r.right is None else r.right + 1}</td><td class='right'>{b}</td></tr>")
    return "\n".join(rows) + "</table></div>"


def _download(code: str, rank: int) -> str:
    path = Path(tempfile.mkdtemp(prefix="fabe-clean-")) / f"cleaned-rank{rank}.c"
    path.write_text(code)
    return str(path)


def show_candidate(state: dict, rank: int | None):
    """Diff, code and download of candidate `rank` (the top one when None)."""
    cands = state.get("candidates") or []
    if not cands:
        return "", "", None
    cand = next((c for c in cands if c["rank"] == rank), cands[0])
    spans = trigger_spans(state["input"], state.get("edits"))
    return diff_html(state["input"], cand["code"], spans), cand["code"], _download(cand["code"], cand["rank"])


def candidate_rows(code: str, cands: list) -> list[list[Any]]:
    """One row per distinct candidate (identical ones are counted, their weights summed)."""
    rows: dict[int, list[Any]] = {}
    for c in cands:
        if c.same_as is not None:
            rows[c.same_as][1] += 1
            rows[c.same_as][2] = round(rows[c.same_as][2] + c.weight, 3)
            continue
        yes_no = {True: "yes", False: "no", None: "-"}
        rows[c.rank] = [c.rank, 1, round(c.weight, 3), round(c.score, 4), yes_no[c.parses], yes_no[c.keeps_signature],
                        f"{c.kept:.0%}", ", ".join(c.triggers_left) or "-", yes_no[c.is_input],
                        yes_no[c.matches_reference], lines_changed(code, c.code)]
    return list(rows.values())


def verdict_html(cleaning) -> str:
    color = VERDICT_COLORS[cleaning.verdict]
    kept = "<br><b>The input is returned unchanged</b> (abstain)." if cleaning.abstained else ""
    return (f"<div id='verdict' data-verdict='{cleaning.verdict}' style='border-left: 6px solid {color}; "
            f"padding: 4px 10px'><b style='color: {color}'>{cleaning.verdict.upper()}</b>: "
            f"{html.escape(cleaning.reason)}{kept}</div>")


def _records(ctx: AppContext, split: str):
    """The records of a split typed in the page; one outside the app's roots is refused unread."""
    from fabe.data.dataset import load_records

    try:
        return load_records(ctx.split(split))
    except (OSError, ValueError) as e:
        raise gr.Error(str(e)) from None


def record_label(rec) -> str:
    """What the record picker shows of a record: its id, trigger kind, origin and size."""
    origin = rec.origin or {}
    where = f"{origin['project']} {origin.get('path', '')}".strip() if "project" in origin else ""
    parts = [rec.id, rec.trigger or "unpoisoned", where, f"{rec.input.count(chr(10)) + 1} lines"]
    return " · ".join(p for p in parts if p)


def record_info(rec) -> str:
    kind = f"poisoned, trigger **{rec.trigger}**" if rec.trigger else "**unpoisoned** (must come back unchanged)"
    origin = rec.origin or {}
    where = f" from {origin['project']} `{origin.get('path', '')}` ({origin.get('license', '?')} licence)" \
        if "project" in origin else ""
    return f"Record `{rec.id}`: {kind}{where}"


def picked_of(rec) -> dict:
    """What the page keeps of a picked record, tied to the code it describes."""
    return {"id": rec.id, "input": rec.input, "edits": rec.edits, "reference": rec.clean}


def applies(picked: dict | None, code: str) -> dict | None:
    """The picked record while the input is still its code, else None."""
    return picked if picked and picked.get("input") == code else None


EMPTY_STATE = {"input": "", "candidates": [], "edits": None}


def no_results(message: str = "", code: str = "") -> tuple:
    """The result widgets emptied (message, state, table, pick, diff, chosen, download, verdict)."""
    return message, {**EMPTY_STATE, "input": code}, [], gr.update(choices=[], value=None), "", "", None, ""


def results_view(code: str, cands: list[Candidate], edits: list | None, abstain: bool, header: str) -> tuple:
    """The result widgets for `cands` of `code`: the message (`header`, what is distinct),
    the table, the top candidate's diff, code and download, and the verdict."""
    from fabe.cleaning.trust import assess

    cleaning = assess(code, cands, abstain)
    distinct = len({c.rank if c.same_as is None else c.same_as for c in cands})
    if distinct == 1 and len(cands) > 1:
        header += (f" **All {len(cands)} candidates are the same code**: the decoding found one rewrite only; "
                   "raise the diversity penalty or K to see alternatives.")
    elif distinct < len(cands):
        header += f" {distinct} distinct (identical ones are counted in `copies`)."
    st = {"input": code, "candidates": [c.to_dict() for c in cands], "edits": edits}
    shown = show_candidate(st, 1)
    if cleaning.abstained:  # the chosen output is the input itself
        shown = (shown[0], code, _download(code, 0))
    return (header, st, candidate_rows(code, cands), gr.update(choices=[c.rank for c in cands if c.same_as is None],
                                                               value=1), *shown, verdict_html(cleaning))


# ---------------------------------------------------------------- handlers

def on_upload(file: str | None):
    """The uploaded code; the record picked before (its title, trigger marks, reference) no
    longer applies."""
    if not file:
        return gr.update(), gr.update(), gr.update(), gr.update()
    try:
        return read_code_file(file, Path(file).name), None, "", ""
    except ValueError as e:
        raise gr.Error(str(e)) from None


def on_typed(code: str, picked: dict | None):
    """Code typed or pasted by hand is no dataset record: once it differs from the picked
    record's input, forget that record's edits, reference and title."""
    if applies(picked, code):
        return gr.update(), gr.update(), gr.update()
    return None, "", "Typed or pasted code (no dataset record): its triggers are found by the detector."


def _settings(code: str, k: float, diversity: float, decoding: str, max_new_tokens: float) -> CleanConfig:
    check_code(code)
    return CleanConfig(k=int(k), diversity=float(diversity), decoding=decoding,
                       max_new_tokens=int(max_new_tokens or 0))


class Actions:
    """The tab's event handlers, bound to the app (methods, so that Gradio sees their
    `gr.Request` and `gr.Progress` parameters)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def on_refresh(self, current: str | None):
        found = cleaner_sources(self.ctx.runs_dir)
        values = [s for _, s in found]
        return gr.update(choices=found, value=current if current else (values[0] if values else None))

    def on_load(self, src: str | None) -> str:
        if not src:
            return "Pick a cleaner first."
        try:
            cleaner = self.ctx.cleaners.load(self.ctx.confine_model(src))
        except (OSError, ValueError, ModelLoadError) as e:
            return f"**Cannot load** `{src}`: {e}"
        params = sum(p.numel() for p in cleaner.model.parameters()) / 1e6
        return f"Loaded `{src}` ({params:.1f}M parameters, {cleaner.device}). Loaded now: {len(self.ctx.cleaners.loaded())}."

    def on_unload(self, src: str | None) -> str:
        if src and self.ctx.cleaners.unload(src):
            return f"Unloaded `{src}`; its memory is freed."
        return "That cleaner is not loaded."

    def on_list(self, split: str):
        """The split's records as the picker's choices, with a count that says when the list is cut."""
        records = _records(self.ctx, split)
        shown = records[:MAX_LISTED]
        info = (f"{len(records)} records listed" if len(shown) == len(records)
                else f"the first {len(shown)} of {len(records)} records listed")
        return gr.update(choices=[(record_label(r), r.id) for r in shown], value=None, info=info)

    def _record(self, split: str, record_id: str):
        rec = next((r for r in _records(self.ctx, split) if r.id == record_id), None)
        if rec is None:
            raise gr.Error(f"{split}: no record {record_id!r}")
        return rec

    def on_record(self, split: str, record_id: str | None):
        """The picked record shown as the input (the results of other code emptied)."""
        if not record_id:
            return (gr.update(),) * 4 + no_results()
        rec = self._record(split, record_id)
        return (rec.input, record_info(rec), rec.clean or "", picked_of(rec), *no_results(code=rec.input))

    def show_record(self, folder: str | None, split: str, record_id: str | None, abstain: bool):
        """A record opened from an evaluation: the record sub-tab, the record, and the
        candidates that evaluation saved for it."""
        from fabe.evaluation.report import source_label
        from fabe.evaluation.runner import load_candidates, load_eval

        if not record_id or not folder:
            raise gr.Error("Pick an evaluation and a record to open.")
        rec = self._record(split, record_id)
        head = (gr.Tabs(selected="record"), split, gr.update(choices=[(record_label(rec), rec.id)], value=rec.id),
                rec.input, record_info(rec), rec.clean or "", picked_of(rec))
        cands = load_candidates(folder, record_id)
        if cands is None:
            return head + no_results(f"The evaluation in `{folder}` saved no candidates for `{record_id}` "
                                     "(it predates candidates.jsonl): load a cleaner and press Clean.", rec.input)
        meta = load_eval(folder)["meta"]
        clean = meta.get("clean", {})
        header = (f"{len(cands)} candidates saved by the evaluation of `{source_label(meta['source'])}` "
                  f"(K={clean.get('k')}, {clean.get('decoding')}); press Clean to decode again with the settings "
                  "above.")
        return head + results_view(rec.input, mark_reference(cands, rec.clean), rec.edits, abstain, header)

    def _generate(self, model: str, code: str, cfg: CleanConfig, request: gr.Request, progress):
        """The candidates of `code`, with the session's cancel event registered meanwhile."""
        cancel = threading.Event()
        self.ctx.cancels[request.session_hash] = cancel
        progress(0, desc="waiting for the model (one generation per model at a time)")
        try:
            with self.ctx.cleaners.using(model) as cleaner:
                return cleaner.clean_batch([code], cfg, cancel=cancel, on_token=lambda n, budget: progress(
                    (n, budget), desc="decoding", unit="tokens"))[0]
        finally:
            self.ctx.cancels.pop(request.session_hash, None)

    def on_clean(self, request: gr.Request, progress=gr.Progress(), *, source: str | None, code: str,
                 k: float, diversity: float, decoding: str, max_new_tokens: float, picked: dict | None = None,
                 abstain: bool = False):
        """K candidates of the input; the picked record's trigger offsets and reference are
        used only while the input is that record's code."""
        if not source:
            return no_results("Pick and load a cleaner first.", code)
        if not (code or "").strip():
            return no_results("Paste some C code first (the input is empty).", code)
        try:
            cfg = _settings(code, k, diversity, decoding, max_new_tokens)
            model = self.ctx.confine_model(source)
        except ValueError as e:
            return no_results(f"**Invalid input or settings:** {e}", code)
        try:
            cands = self._generate(model, code, cfg, request, progress)
        except InputTooLong as e:
            return no_results(f"**Input too long:** {e}. Nothing was cleaned (no silent truncation).", code)
        except (ModelLoadError, OSError) as e:
            return no_results(f"**Cannot load** `{source}`: {e}", code)
        except Cancelled:
            return no_results("Cancelled.", code)
        from fabe.data import cparse

        record = applies(picked, code)
        note = "" if cparse.parses(code) else " (the input does not parse as C; cleaned anyway)"
        header = f"{len(cands)} candidates from `{source}`{note}."
        return results_view(code, mark_reference(cands, record and record["reference"]),
                            record and record["edits"], abstain, header)

    def cancel_session(self, request: gr.Request) -> None:
        """Stop the session's generation; also run when its page closes, so a dropped browser
        does not keep the model busy decoding for nobody."""
        event = self.ctx.cancels.get(request.session_hash)
        if event is not None:
            event.set()

    def on_cancel(self, request: gr.Request) -> str:
        if request.session_hash not in self.ctx.cancels:
            return "Nothing to cancel."
        self.cancel_session(request)
        return "Cancelling…"

    def on_export(self, src: str | None, out: str) -> str:
        from fabe.cleaning.export import export_model

        if not src or not out:
            return "Pick a cleaner and give a new folder."
        try:
            return f"Exported to `{export_model(resolve_source(self.ctx.confine_model(src)), self.ctx.confine(out))}`."
        except (OSError, ValueError, ModelLoadError) as e:
            return f"**Export failed:** {e}"


# ---------------------------------------------------------------- layout

def _source_row(ctx: AppContext) -> dict[str, Any]:
    sources = cleaner_sources(ctx.runs_dir)
    with gr.Row():
        w = {"source": gr.Dropdown([(label, src) for label, src in sources], value=sources[0][1] if sources else None,
                                   allow_custom_value=True, elem_id="clean-source", scale=4,
                                   label="Cleaner (shipped, a run's final model or checkpoint, or a model folder)"),
             "refresh": gr.Button("Refresh list", scale=1), "load": gr.Button("Load", scale=1),
             "unload": gr.Button("Unload", scale=1)}
    w["loaded"] = gr.Markdown(elem_id="clean-loaded")
    return w


def _input_widgets() -> dict[str, Any]:
    w: dict[str, Any] = {}
    with gr.Tabs(elem_id="clean-input-tabs") as w["subtabs"]:
        with gr.Tab("Paste or upload", id="paste"):
            w["upload"] = gr.File(label="Upload a .c file", file_types=[".c", ".h", ".txt"], height=90)
        with gr.Tab("Pick a dataset record", id="record"):
            with gr.Row():
                w["split"] = gr.Textbox("examples", elem_id="clean-split", label="Split (.jsonl/.json, a dataset folder; examples: the "
                                                          "shipped real examples; embedded: generated code)")
                w["list"] = gr.Button("List records")
            w["record"] = gr.Dropdown(label="Record (id · trigger · origin · lines; type to filter)", choices=[],
                                      elem_id="clean-record")
            w["reference"] = gr.Code(language="c", label="Reference clean code", interactive=False)
    w["record_info"] = gr.Markdown(elem_id="clean-record-info")
    w["code"] = gr.Code(language="c", label="Code to clean", interactive=True, elem_id="clean-input")
    with gr.Row():
        w["k"] = gr.Slider(1, 8, value=4, step=1, label="K candidates")
        w["diversity"] = gr.Slider(0.0, 2.0, value=0.5, step=0.1, label="Diversity penalty (diverse beam)")
        w["decoding"] = gr.Radio(list(DECODINGS), value="diverse_beam", label="Decoding")
        w["max_new_tokens"] = gr.Number(0, precision=0, label="Max new tokens (0: 1.25 x input + 16)")
    with gr.Row():
        w["abstain"] = gr.Checkbox(False, label="Abstain: keep the input when no candidate is trustworthy",
                                   elem_id="clean-abstain")
        w["clean"] = gr.Button("Clean", variant="primary")
        w["cancel"] = gr.Button("Cancel")
    return w


def _result_widgets() -> dict[str, Any]:
    w = {"message": gr.Markdown(elem_id="clean-message"), "verdict": gr.HTML(elem_id="clean-verdict"),
         "table": gr.Dataframe(headers=TABLE, interactive=False, elem_id="candidates-table"),
         "pick": gr.Radio(label="Candidate shown in the diff", choices=[], elem_id="candidate-pick"),
         "diff": gr.HTML(elem_id="clean-diff")}
    with gr.Row():
        w["cleaned"] = gr.Code(language="c", label="Chosen candidate (copy button at its top right)",
                               interactive=False, elem_id="clean-output")
        w["download"] = gr.File(label="Download the chosen candidate", interactive=False, elem_id="clean-download")
    with gr.Accordion("Export: merge a LoRA cleaner into its base model (safetensors)", open=False):
        with gr.Row():
            w["export_to"] = gr.Textbox(label="New folder for the exported model")
            w["export"] = gr.Button("Export")
        w["export_msg"] = gr.Markdown()
    w["state"] = gr.State(dict(EMPTY_STATE))
    w["picked"] = gr.State(None)  # the picked record, with the code it describes (`picked_of`)
    return w


RESULTS = ("message", "state", "table", "pick", "diff", "cleaned", "download", "verdict")


def _wire(act: Actions, w: dict[str, Any]) -> None:
    w["refresh"].click(act.on_refresh, [w["source"]], [w["source"]])
    w["load"].click(act.on_load, [w["source"]], [w["loaded"]], api_name="load_cleaner")
    w["unload"].click(act.on_unload, [w["source"]], [w["loaded"]], api_name="unload_cleaner")
    w["upload"].upload(on_upload, [w["upload"]], [w["code"], w["picked"], w["reference"], w["record_info"]])
    w["code"].input(on_typed, [w["code"], w["picked"]], [w["picked"], w["reference"], w["record_info"]],
                    api_name="forget_record")
    w["list"].click(act.on_list, [w["split"]], [w["record"]])
    # .input, not .change: a record set by the page (opened from Evaluate) is shown by that handler
    w["record"].input(act.on_record, [w["split"], w["record"]],
                      [w["code"], w["record_info"], w["reference"], w["picked"], *(w[n] for n in RESULTS)],
                      api_name="pick_record")
    named = ("source", "code", "k", "diversity", "decoding", "max_new_tokens", "picked", "abstain")
    run = w["clean"].click(act.on_clean, inputs_kwargs={n: w[n] for n in named}, outputs=[w[n] for n in RESULTS],
                           api_name="clean")
    w["cancel"].click(act.on_cancel, None, [w["message"]], cancels=[run])
    w["pick"].change(show_candidate, [w["state"], w["pick"]], [w["diff"], w["cleaned"], w["download"]])
    w["export"].click(act.on_export, [w["source"], w["export_to"]], [w["export_msg"]], api_name="export")


def build(ctx: AppContext) -> CleanTab:
    with gr.Tab("Clean", id="clean"):
        w = {**_source_row(ctx), **_input_widgets(), **_result_widgets()}
        act = Actions(ctx)
        _wire(act, w)
    shown = ["subtabs", "split", "record", "code", "record_info", "reference", "picked", *RESULTS]
    return CleanTab(show_record=(act.show_record, [w["abstain"]], [w[n] for n in shown]),
                    cancel_session=act.cancel_session)
