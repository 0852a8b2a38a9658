"""FABE Studio web app: `python app.py [--host 127.0.0.1] [--port 7860] [--runs-dir runs]
[--auth user:password]`. Assembles the tabs of `pages/`; binds loopback unless told
otherwise, and then only with --auth; never phones home."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_SHARE": "False"}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

import gradio as gr  # noqa: E402  (after the environment that keeps it offline)

import pages.clean  # noqa: E402
import pages.defense  # noqa: E402
import pages.evaluate  # noqa: E402
import pages.runs  # noqa: E402
import pages.train  # noqa: E402
from pages.context import AppContext  # noqa: E402


CSS = pages.clean.CSS


def build_app(runs_dir: str | Path = "runs") -> gr.Blocks:
    ctx = AppContext(runs_dir=Path(runs_dir))
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="FABE Studio") as demo:
        gr.Markdown("## FABE Studio: train and use backdoor cleaners for code")
        with gr.Tabs() as tabs:
            train_tab = pages.train.build(ctx)
            runs_tab = pages.runs.build(ctx)
            clean_tab = pages.clean.build(ctx)
            eval_tab = pages.evaluate.build(ctx)
            pages.defense.build(ctx)
        select, outputs = runs_tab.select
        train_tab.launched.change(select, [train_tab.launched], outputs).then(
            lambda run_id: gr.Tabs(selected="runs") if run_id else gr.Tabs(),
            [train_tab.launched], [tabs])
        show_record, record_outputs = clean_tab.show_record
        eval_tab.open_record.click(show_record, eval_tab.record_ref, record_outputs).then(
            lambda: gr.Tabs(selected="clean"), None, [tabs])
    return demo


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="FABE Studio web app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--auth", help="user:password (required for a non-loopback --host)")
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.auth:
        parser.error(f"--host {args.host} is reachable from other machines: give --auth user:password")
    if args.auth and ":" not in args.auth:
        parser.error("--auth must be user:password")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    demo = build_app(args.runs_dir)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, share=False,
                ssr_mode=False, css=CSS)


if __name__ == "__main__":
    main()
