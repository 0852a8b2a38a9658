"""The project's simple mode (`fabe.training.run.train`: FabeTrainer, its loss components, the
run-directory callbacks, train.log) vs a bare `transformers.Trainer` with the standard
causal-LM loss, on the same model, tokenized best candidates, collator, batches (both
without length grouping, so the batches are identical) and TrainingArguments. Runs
alternate in one process, `--repeats` of each; s/step is measured the same way in both
(time between two log events / steps between them, the first window dropped as warmup).

    python bench/trainer_overhead.py [--model embedded] [--batch 8] [--steps 60] [--repeats 3]

Read: "fabe / bare" is the overhead of the project's trainer (target <= 1.05).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import transformers
from transformers import Trainer, TrainerCallback

from fabe.data.builder import BuildConfig, build_dataset
from fabe.rundir import RunDir
from fabe.training.config import TrainConfig
from fabe.training.encoding import Collator, EncodedDataset, encode_records
from fabe.training.run import load_data, train
from fabe.training.trainer import load_model_for_training, training_arguments


class StepTimer(TrainerCallback):
    """s/step between consecutive log events, as RunMetricsCallback computes it."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None
        self.s_per_step: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.last = (time.time(), state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "loss" not in logs:
            return
        t = time.time()
        self.s_per_step.append((t - self.last[0]) / (state.global_step - self.last[1]))
        self.last = (t, state.global_step)


def bare_run(cfg: TrainConfig, out: Path) -> list[float]:
    model, tokenizer, _ = load_model_for_training(cfg)
    train_set = EncodedDataset(encode_records(load_data(cfg)[0], tokenizer, cfg.mode, cfg.max_length)[0])
    timer = StepTimer()
    trainer = Trainer(model=model, args=training_arguments(cfg, out, False), train_dataset=train_set,
                      processing_class=tokenizer, data_collator=Collator(tokenizer.pad_token_id, "simple"),
                      callbacks=[timer])
    trainer.train()
    return timer.s_per_step[1:]


def fabe_run(cfg: TrainConfig, out: Path) -> list[float]:
    train(dataclasses.replace(cfg, out=str(out)))
    transformers.utils.logging.set_verbosity_warning()  # what train() raised for train.log
    rows = [r for r in RunDir(out).read_metrics() if r.get("s_per_step") is not None]
    return [r["s_per_step"] for r in rows[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arms = {"bare": bare_run, "fabe": fabe_run}
    times: dict[str, list[list[float]]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(BuildConfig(out=f"{tmp}/data", n=200, seed=3))
        cfg = TrainConfig(data=f"{tmp}/data", model=args.model, mode="simple", finetune="full",
                          batch_size=args.batch, max_steps=args.steps, logging_steps=args.logging_steps,
                          eval_steps=0, save_steps=1_000_000, group_by_length=False, precision="fp32",
                          max_length=1024)
        for rep in range(args.repeats):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))  # cancel drift
            for name in order:
                times[name].append(arms[name](cfg, Path(tmp) / f"{name}-{rep}"))
    report(args, times)


def report(args, times: dict[str, list[list[float]]]) -> None:
    print(f"simple mode, model {args.model}, batch {args.batch}, {args.steps} steps per run, "
          f"s/step over windows of {args.logging_steps} steps, {args.repeats} runs of each, alternated")
    print(f"{'run':>4} {'bare s/step':>12} {'fabe s/step':>12} {'fabe / bare':>12}")
    for rep, (bare, fabe) in enumerate(zip(times["bare"], times["fabe"])):
        b, f = statistics.median(bare), statistics.median(fabe)
        print(f"{rep:4d} {b:12.4f} {f:12.4f} {f / b:12.3f}")
    b = statistics.median(t for run in times["bare"] for t in run)
    f = statistics.median(t for run in times["fabe"] for t in run)
    print(f"{'all':>4} {b:12.4f} {f:12.4f} {f / b:12.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
