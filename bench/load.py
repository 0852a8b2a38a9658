"""A training run's step time with the app idle vs under load: 20 API clients polling the
runs table and the run's charts without pause, and 10 cleaning requests queued at once (a
new batch of 10 as soon as one is answered). Phases alternate (idle, polling, cleaning) in
one run, `--repeats` times; each phase's s/step is the median of the run's own per-step
`s_per_step` lines written inside it. Request latencies are p50/p95 over every request.

    python bench/load.py [--model embedded] [--cleaner embedded] [--phase_s 30] [--repeats 3]

Read: "x idle" is the phase's median s/step over the idle one (target <= 1.05). On a CPU-only
machine the run and the cleaner share the same cores, so the cleaning phase measures core
contention, not the app's overhead; the polling phase is the app's own cost.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fabe.data.builder import BuildConfig, build_dataset
from fabe.data.generator import generate_functions
from fabe.data.triggers import insert_trigger
from fabe.rundir import RunDir
from fabe.runs import manager as runs
from fabe.training.config import TrainConfig


def start_app(runs_dir: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app.py sits beside bench/
    import app

    demo = app.build_app(runs_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue(default_concurrency_limit=4).launch(server_name="127.0.0.1", server_port=port, quiet=True,
                                                   prevent_thread_lock=True, ssr_mode=False)
    return demo, f"http://127.0.0.1:{port}/"


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def poll_until(url: str, run_id: str, deadline: float, latencies: dict[str, list[float]],
               errors: list[str]) -> None:
    """One open tab: the runs table, then the run's charts, again and again."""
    c = client(url)
    while time.time() < deadline:
        for kind, args in (("status", (None, "/refresh_runs")), ("metrics", (run_id, "/show_run"))):
            try:
                latencies[kind].append(timed(c.predict, args[0], api_name=args[1]))
            except Exception as e:  # noqa: BLE001  (counted and reported: an unanswered request)
                errors.append(f"{kind}: {type(e).__name__}: {e}")
    c.close()


def clean_until(users: list, args, codes: list[str], deadline: float, latencies: dict[str, list[float]]) -> None:
    """Batches of len(users) cleaning requests submitted at once, until the deadline."""
    def answered(start: float):
        return lambda job: latencies["clean"].append(time.perf_counter() - start)

    while time.time() < deadline:
        jobs = []
        for u, code in zip(users, codes):
            jobs.append(u.submit(args.cleaner, code, 4, 0.5, "diverse_beam", args.max_new_tokens, api_name="/clean"))
            jobs[-1].add_done_callback(answered(time.perf_counter()))
        for job in jobs:
            message = job.result(timeout=600)[0]
            assert " candidates from " in message, message


def phase_s_per_step(run: RunDir, start: float, end: float) -> list[float]:
    return [r["s_per_step"] for r in run.read_metrics()
            if r.get("s_per_step") is not None and start <= r["time"] <= end]


def launch_run(tmp: Path, args) -> RunDir:
    data = tmp / "data"
    build_dataset(BuildConfig(out=str(data), n=200, seed=3))
    cfg = TrainConfig(data=str(data), model=args.model, mode="simple", finetune="full", batch_size=args.batch,
                      max_steps=100_000, logging_steps=1, eval_steps=0, save_steps=1_000_000, precision="fp32")
    run = runs.launch(cfg, "cpu", tmp / "runs", "load")
    deadline = time.time() + 600
    while len(run.read_metrics()) < 5:  # past model loading and the first steps
        if time.time() > deadline or runs.reconcile(run)["state"] not in runs.LIVE:
            raise SystemExit(f"the run did not start; see {run.log_path}")
        time.sleep(1)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="base model the run trains")
    parser.add_argument("--cleaner", default="embedded", help="cleaner the requests use")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--cleans", type=int, default=10)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--phase_s", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    codes = [insert_trigger(f.code, "fixed", i).code for i, f in enumerate(generate_functions(args.cleans, seed=9))]
    with tempfile.TemporaryDirectory() as tmp:
        run = launch_run(Path(tmp), args)
        demo, url = start_app(Path(tmp) / "runs")
        users = [client(url) for _ in range(args.cleans)]
        users[0].predict(args.cleaner, api_name="/load_cleaner")
        per_step: dict[str, list[float]] = {"idle": [], "polling": [], "cleaning": []}
        latencies: dict[str, list[float]] = {"status": [], "metrics": [], "clean": []}
        errors: list[str] = []
        try:
            for _ in range(args.repeats):
                for name in per_step:
                    start = time.time()
                    deadline = start + args.phase_s
                    if name == "polling":
                        with ThreadPoolExecutor(args.clients) as pool:
                            tabs = [pool.submit(poll_until, url, "load", deadline, latencies, errors)
                                    for _ in range(args.clients)]
                            for tab in tabs:
                                tab.result()  # a failed request stops the benchmark
                    elif name == "cleaning":
                        clean_until(users, args, codes, deadline, latencies)
                    else:
                        time.sleep(args.phase_s)
                    per_step[name] += phase_s_per_step(run, start, time.time())
        finally:
            for u in users:
                u.close()
            demo.close()
            runs.stop(run.path, grace_s=60)
    report(args, per_step, latencies, errors)


def report(args, per_step: dict[str, list[float]], latencies: dict[str, list[float]], errors: list[str]) -> None:
    idle = statistics.median(per_step["idle"])
    print(f"run: simple mode, batch {args.batch}, model {args.model}; {args.repeats} x "
          f"{args.phase_s:.0f} s per phase; {args.clients} polling clients, {args.cleans} queued cleanings "
          f"(K=4, max_new_tokens {args.max_new_tokens})")
    print(f"{'phase':10} {'steps':>6} {'median s/step':>14} {'x idle':>7}")
    for name, values in per_step.items():
        med = statistics.median(values) if values else float("nan")
        print(f"{name:10} {len(values):6d} {med:14.4f} {med / idle:7.3f}")
    print(f"{'request':10} {'count':>6} {'p50 s':>8} {'p95 s':>8}")
    for name, values in latencies.items():
        q = statistics.quantiles(values, n=20) if len(values) >= 2 else values * 19
        print(f"{name:10} {len(values):6d} {statistics.median(values):8.3f} {q[18]:8.3f}")
    print(f"unanswered requests: {len(errors)}" + "".join(f"\n  {e}" for e in errors[:5]))


if __name__ == "__main__":
    main()
