"""Small helpers shared by the tests that start servers and background runs."""

from __future__ import annotations

import contextlib
import socket
import time

# The embedded tiny model at reduced sizes, so tests that build one stay fast.
TINY_TEST_SHAPE = dict(corpus_n=300, vocab_size=512, hidden_size=64, num_layers=2, num_heads=4,
                       intermediate_size=128, max_positions=1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 240.0, every: float = 0.3):
    """The predicate's first truthy value, polled every `every` s; fails after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def page_message(call) -> str:
    """What the page says to a gradio_client call: its first output, or the text of the
    error it raised (gr.Error arrives as AppError)."""
    from gradio_client.exceptions import AppError

    try:
        out = call()
    except AppError as e:
        return str(e)
    return out if isinstance(out, str) else out[0]


@contextlib.contextmanager
def served_app(runs_dir, roots):
    """The real app on a free loopback port and a gradio_client of it, closed after."""
    import app
    from gradio_client import Client

    demo = app.build_app(runs_dir, roots=roots)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        ssr_mode=False)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
    try:
        yield client
    finally:
        client.close()
        demo.close()
