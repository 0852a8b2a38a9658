"""FABE Studio web app: `python app.py [--host 127.0.0.1] [--port 7860] [--runs-dir runs]
[--auth user:password] [--roots DIR:DIR]`. Assembles the tabs of `pages/`; binds loopback
unless told otherwise, and then only with --auth; paths typed into the page must lie in the
roots; never phones home."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from pathlib import Path

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_SHARE": "False"}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

import gradio as gr  # noqa: E402  (after the environment that keeps it offline)
from starlette.middleware import Middleware  # noqa: E402

import pages.clean  # noqa: E402
import pages.defense  # noqa: E402
import pages.evaluate  # noqa: E402
import pages.runs  # noqa: E402
import pages.train  # noqa: E402
from pages.context import AppContext  # noqa: E402


CSS = pages.clean.CSS


def app_roots(runs_dir: str | Path, roots: list[str | Path] | None = None) -> list[Path]:
    """Where typed paths may point: `roots` (default: the working directory), always with
    the runs folder and $FABE_HOME (the app's own runs, embedded data and victim)."""
    from fabe.home import fabe_home
    from fabe.paths import resolve_roots

    return resolve_roots([*([Path.cwd()] if roots is None else roots), runs_dir, fabe_home()])


def _link_runs(train_tab: pages.train.TrainTab, runs_tab: pages.runs.RunsTab, tabs: gr.Tabs,
               demo: gr.Blocks) -> None:
    """A launch shows its run; `?run=ID` opens that run on load; "new run from this config"
    fills the Train form."""
    select, outputs = runs_tab.select
    train_tab.launched.change(select, [train_tab.launched], outputs).then(
        lambda run_id: gr.Tabs(selected="runs") if run_id else gr.Tabs(), [train_tab.launched], [tabs])
    link, link_outputs = runs_tab.link
    demo.load(link, None, [*link_outputs, tabs], api_name="open_run_link")
    demo.load(None, None, None, js=pages.runs.PAGE_JS)
    runs_tab.new_from.click(train_tab.from_run, [runs_tab.pick], train_tab.form_outputs,
                            api_name="new_run_from_config").then(lambda: gr.Tabs(selected="train"), None, [tabs])


def build_app(runs_dir: str | Path = "runs", roots: list[str | Path] | None = None) -> gr.Blocks:
    ctx = AppContext(runs_dir=Path(runs_dir), roots=app_roots(runs_dir, roots))
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="FABE Studio") as demo:
        gr.Markdown("## FABE Studio: train and use backdoor cleaners for code")
        with gr.Tabs() as tabs:
            train_tab = pages.train.build(ctx)
            runs_tab = pages.runs.build(ctx)
            clean_tab = pages.clean.build(ctx)
            eval_tab = pages.evaluate.build(ctx)
            pages.defense.build(ctx)
        _link_runs(train_tab, runs_tab, tabs, demo)
        show_record, clean_inputs, record_outputs = clean_tab.show_record
        eval_tab.open_record.click(show_record, eval_tab.record_ref + clean_inputs, record_outputs,
                                   api_name="open_record").then(
            lambda: gr.Tabs(selected="clean"), None, [tabs])
        demo.unload(clean_tab.cancel_session)
    return demo


API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)


class LoginPageWithoutApi:
    """ASGI middleware: Gradio 6 embeds the whole API description (endpoints, labels, the
    dropdowns' run and checkpoint paths) in the login page it serves to anyone; this blanks
    it in a page whose config says a login is required. Other responses pass untouched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        held: dict = {}
        body: list[bytes] = []

        async def relay(message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    return await send(message)
                held["start"] = message
                return None
            if "start" not in held:
                return await send(message)
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            page = b"".join(body)
            if b'"auth_required":true' in page:
                page = API_INFO.sub(b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>', page)
            start = held["start"]
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, relay)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_roots(value: str) -> list[str]:
    return [r for r in value.split(os.pathsep) if r]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="FABE Studio web app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--auth", help="user:password (required for a non-loopback --host)")
    parser.add_argument("--roots", type=split_roots,
                        help=f"folders ({os.pathsep}-separated) that paths typed into the page may point into "
                             "(default: the working directory); --runs-dir and $FABE_HOME always")
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.auth:
        parser.error(f"--host {args.host} is reachable from other machines: give --auth user:password")
    if args.auth and ":" not in args.auth:
        parser.error("--auth must be user:password")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    demo = build_app(args.runs_dir, args.roots)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, share=False,
                ssr_mode=False, css=CSS, app_kwargs={"middleware": [Middleware(LoginPageWithoutApi)]})


if __name__ == "__main__":
    main()
