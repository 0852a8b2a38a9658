"""The command line: `python -m fabe GROUP COMMAND [flags]`.

Commands whose options are a config dataclass take them through `HfArgumentParser`, so each
option is documented once, in the dataclass. The page (later) calls the same functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from fabe import embedded

logger = logging.getLogger("fabe")
EMBEDDED_VICTIMS = ", ".join(embedded.VICTIM_NAMES[:-1]) + " or " + embedded.VICTIM_NAMES[-1]  # for --victim's help


def _options(cls: type, prog: str, description: str, argv: list[str]):
    """The one config dataclass `cls` of a command, from its flags."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(cls, prog=f"python -m fabe {prog}", description=description)
    return parser.parse_args_into_dataclasses(args=argv)[0]


def _data_build(argv: list[str]) -> int:

    from fabe.data.builder import BuildConfig, build_dataset
    from fabe.data.dataset import dataset_stats, format_stats

    cfg = _options(BuildConfig, "data build", "Build a poisoned Tuna-format dataset (train/valid/test).", argv)
    splits = build_dataset(cfg)
    for name, records in splits.items():
        print(f"== {cfg.out}/{name}.jsonl\n{format_stats(dataset_stats(records))}")
    return 0


def _data_examples(argv: list[str]) -> int:

    from fabe.data.examples import ExamplesConfig, build_examples

    cfg = _options(ExamplesConfig, "data examples", "Make the shipped real examples (permissive licences, held-out projects).", argv)
    print(f"{len(build_examples(cfg))} examples written to {cfg.out}")
    return 0


def _file_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("path", help="A .jsonl or .json file, or a folder with train/valid/test files.")
    parser.add_argument("--tokenizer", help="Model folder whose tokenizer gives token lengths.")
    parser.add_argument("--json", action="store_true", help="Print the stats as JSON.")
    return parser


def _load_for_stats(args: argparse.Namespace) -> dict[str, dict]:
    """Validate every file named by `args.path`; stats per file. Raises DatasetError."""
    from pathlib import Path

    from fabe.data.dataset import dataset_stats, find_split_files, load_records

    path = Path(args.path)
    files = find_split_files(path) if path.is_dir() else {path.name: path}
    tokenizer = None
    if args.tokenizer:
        from fabe.training.modeling import load_tokenizer
        tokenizer = load_tokenizer(args.tokenizer)
    return {str(f): dataset_stats(load_records(f), tokenizer) for f in files.values()}


def _data_stats(argv: list[str], prog: str = "python -m fabe data stats",
                description: str = "Counts, length percentiles, score range and trigger kinds.") -> int:
    from fabe.data.dataset import DatasetError, format_stats

    args = _file_parser(prog, description).parse_args(argv)
    try:
        stats = _load_for_stats(args)
    except (DatasetError, FileNotFoundError) as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for name, s in stats.items():
            print(f"== {name}: OK, {s['records']} records\n{format_stats(s)}")
    return 0


def _data_check(argv: list[str]) -> int:
    return _data_stats(argv, "python -m fabe data check",
                       "Validate a dataset: exit 0 and stats, or non-zero and every error.")


def _model_init_tiny(argv: list[str]) -> int:

    from fabe.training.modeling import TinyConfig, init_tiny

    cfg = _options(TinyConfig, "model init-tiny", "Create the embedded tiny Llama and its BPE tokenizer.", argv)
    out = init_tiny(cfg)
    print(f"tiny model written to {out}")
    return 0


def _changes(run: str, argv: list[str]) -> dict:
    """The options that flags change in the run folder's config (given with a resume)."""
    from fabe.rundir import RunDir
    from fabe.training.config import parse_flags
    from fabe.training.run import run_config

    base = run_config(RunDir(run)).to_dict()
    cfg, _ = parse_flags(argv, base, extra=("--resume",))
    return {k: v for k, v in cfg.to_dict().items() if v != base[k]}


def _train(argv: list[str]) -> int:
    from fabe.training.config import resolve_config
    from fabe.training.run import train, train_run

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--run", default="")
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.run and any(a.split("=")[0] in ("--config", "--preset") for a in argv):
        raise ValueError("--run: the run trains from its config.json alone; change options with flags at a "
                         "--resume, or start a new run with --config/--preset")
    if known.run:
        path = train_run(known.run, known.resume, _changes(known.run, argv))
    elif known.resume:
        raise ValueError("--resume: give the run folder to continue as --run RUN")
    else:
        path = train(resolve_config(argv))
    print(f"run directory: {path}")
    return 0


def _estimate(argv: list[str]) -> int:
    from dataclasses import asdict

    from fabe.training.config import resolve_config
    from fabe.training.estimate import probe

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--probe_steps", type=int, default=3)
    pre.add_argument("--json", action="store_true")
    known, rest = pre.parse_known_args(argv)
    if any(a in ("-h", "--help") for a in rest):
        print("usage: python -m fabe estimate [--probe_steps N] [--json] [train flags: --preset, --config, ...]\n\n"
              "Time a few steps of the run these train flags describe (its model, data and device) and scale them "
              "to its steps, evaluations and saves.")
        return 0
    est = probe(resolve_config(rest), known.probe_steps, progress=lambda line: print(f"probe: {line}", file=sys.stderr,
                                                                                        flush=True))
    print(json.dumps(asdict(est)) if known.json else f"{est.summary()}")
    return 0


def _plan(argv: list[str]) -> int:
    from fabe.runs.processes import gpu_list
    from fabe.training.config import resolve_config
    from fabe.training.planner import GPU_FLOPS, UTILIZATION, memory_warning, plan, plan_table

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--gpu", default="A100", choices=sorted(GPU_FLOPS))
    pre.add_argument("--candidates", type=int, default=3)
    pre.add_argument("--prompt_tokens", type=int)
    pre.add_argument("--target_tokens", type=int)
    pre.add_argument("--json", action="store_true")
    known, rest = pre.parse_known_args(argv)
    if any(a in ("-h", "--help") for a in rest):
        print("usage: python -m fabe plan [--gpu NAME] [--candidates C] [--prompt_tokens P] [--target_tokens T] "
              "[--json] [train flags: --preset, --config, ...]\n\nPeak GPU memory by part, tokens per step and "
              f"s/step on a named GPU (at {UTILIZATION:.0%} utilization), for simple and full mode, from the "
              "model's config alone (no weights are read or downloaded).")
        return 0
    cfg = resolve_config(rest)
    plans = [plan(cfg, mode, known.gpu, known.candidates, known.prompt_tokens, known.target_tokens)
             for mode in ("simple", "full")]
    if known.json:
        print(json.dumps([p.to_dict() for p in plans], indent=2))
        return 0
    print(f"{cfg.model}: batch {cfg.batch_size} x accumulation {cfg.gradient_accumulation_steps}, max length "
          f"{cfg.max_length}, {'LoRA' if plans[0].lora else 'full fine-tune'}, gradient checkpointing "
          f"{'on' if cfg.gradient_checkpointing else 'off'}, packing {'on' if cfg.packing else 'off'}")
    print(plan_table(plans))
    warning = memory_warning(plans, gpu_list())
    if warning:
        print(f"warning: {warning}")
    return 0


def _clean(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    from fabe.cleaning.cleaner import (
        CleanConfig,
        Cleaner,
        check_code,
        cleaning_json,
        read_code_file,
    )
    from fabe.cleaning.trust import mark_reference
    from fabe.data import cparse

    parser = HfArgumentParser(CleanConfig, prog="python -m fabe clean",
                              description="Clean poisoned code into K ranked candidates, with a verdict.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="Run directory (its final/) or a checkpoint-N folder.")
    source.add_argument("--model", help="A model folder or hub id.")
    parser.add_argument("--input", required=True, help="A file of C code, or - for stdin.")
    parser.add_argument("--reference", help="A file with the clean code, to say which candidate restores it.")
    parser.add_argument("--abstain", action="store_true",
                        help="Return the input unchanged (with a warning) when no candidate is trustworthy.")
    parser.add_argument("--json", action="store_true", help="Print the verdict and the candidates as JSON.")
    cfg, args = parser.parse_args_into_dataclasses(args=argv)
    code = sys.stdin.read() if args.input == "-" else read_code_file(args.input)
    check_code(code)
    reference = read_code_file(args.reference) if args.reference else None
    cleaner = Cleaner.load(args.run or embedded.resolve(args.model or embedded.EMBEDDED, "cleaner"))
    if not cparse.parses(code):
        print(f"warning: {args.input}: does not parse as C; cleaned anyway", file=sys.stderr)
    cands = mark_reference(cleaner.clean(code, cfg), reference)
    cleaning = cleaner.assess(code, cands, abstain=args.abstain)
    if cleaning.abstained:
        print(f"warning: no trustworthy candidate ({cleaning.reason}); the input is returned unchanged",
              file=sys.stderr)
    if args.json:
        print(cleaning_json(cleaning))
    else:
        from fabe.cleaning.report import candidates_table, side_by_side

        print(f"verdict: {cleaning.verdict} ({cleaning.reason})")
        print(side_by_side(code, cleaning.output))
        print(candidates_table(cands))
    return 0


def _records_bar(desc: str, quiet: bool, unit: str = "rec"):
    """A tqdm bar (hidden under --json unless stderr is a terminal) and the progress(done,
    total) callback that drives it. The bar is made at the first report, so one that is never
    driven (the victim already trained) prints nothing; `.close()` ends it."""
    from types import SimpleNamespace

    from tqdm.auto import tqdm

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=desc, unit=unit, total=total, disable=quiet and not sys.stderr.isatty()))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    return SimpleNamespace(close=lambda: [bar.close() for bar in bars]), progress


def _split_parser(prog: str, description: str, data_help: str):
    """A parser of CleanConfig plus the cleaner (--run | --model), --data, --limit and --json:
    what the commands that clean a whole split share."""
    from transformers import HfArgumentParser

    from fabe.cleaning.cleaner import CleanConfig

    parser = HfArgumentParser(CleanConfig, prog=f"python -m fabe {prog}", description=description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="Run directory (its final/) or a checkpoint-N folder.")
    source.add_argument("--model", help="A model folder ('embedded': the shipped cleaner).")
    parser.add_argument("--data", required=True, help=data_help + " A dataset folder gives its split; "
                        "'examples' the shipped real examples, 'embedded' the generated dataset.")
    parser.add_argument("--limit", type=int, default=0, help="Use the first N records (0: all).")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    return parser


def _eval(argv: list[str]) -> int:
    from fabe.evaluation.runner import run_eval

    parser = _split_parser("eval", "Clean every record of a split and score the top candidates.",
                           "A Tuna-format .jsonl/.json split.")
    parser.add_argument("--out", help="Folder for eval.json and records.csv (default: next to the run).")
    parser.add_argument("--batch_size", type=int, default=8, help="Inputs cleaned at once.")
    cfg, args = parser.parse_args_into_dataclasses(args=argv)
    src = args.run or embedded.resolve(args.model, "cleaner")
    bar, progress = _records_bar("evaluating", args.json)
    try:
        result, out = run_eval(src, embedded.resolve_split(args.data, "test"), cfg, args.limit, args.out,
                               args.batch_size, progress)
    finally:
        bar.close()  # before an error is printed, so it starts a line of its own
    if args.json:
        print(json.dumps({**result, "out": str(out)}, indent=2))
    else:
        from fabe.evaluation.report import eval_table, ranking_line

        print(eval_table(result).to_string(index=False))
        print(ranking_line(result.get("ranking") or {}))
        print(f"\nsaved: {out / 'eval.json'}, {out / 'records.csv'}, {out / 'summary.csv'}")
    return 0


def _calibrate(argv: list[str]) -> int:
    from fabe.evaluation.runner import calibrate

    parser = _split_parser("calibrate", "Fit the weights' temperature on a validation split; stored in fabe.json.",
                           "A validation split (records with a clean reference).")
    cfg, args = parser.parse_args_into_dataclasses(args=argv)
    src = args.run or embedded.resolve(args.model, "cleaner")
    bar, progress = _records_bar("calibrating", args.json)
    try:
        found = calibrate(src, embedded.resolve_split(args.data, "valid"), cfg, args.limit, progress=progress)
    finally:
        bar.close()
    print(json.dumps(found, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in found.items()))
    return 0


def _export(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fabe export",
        description="Merge a LoRA cleaner into its base model (--run), or export a saved evaluation or defense "
                    "result for a paper (--eval/--defense with --format).")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="Run directory (its final/) or a checkpoint-N folder: the model to export.")
    what.add_argument("--eval", help="A folder holding eval.json (an evaluation's results).")
    what.add_argument("--defense", help="A folder holding defense.json (a defense's results).")
    parser.add_argument("--out", required=True, help="New folder for the model, or the file to write the results to.")
    parser.add_argument("--format", choices=["md", "tex", "png", "csv"],
                        help="Results as a Markdown table, a LaTeX table, a PNG chart or the rates as CSV numbers.")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (--run).")
    args = parser.parse_args(argv)
    if args.run:
        from fabe.cleaning.export import export_model

        print(f"exported: {export_model(args.run, args.out, args.dtype)}")
        return 0
    from fabe.evaluation.report import export_result

    if not args.format:
        parser.error("--format: give md, tex, png or csv with --eval/--defense")
    folder = args.eval or args.defense
    name = "eval.json" if args.eval else "defense.json"
    if not (Path(folder) / name).is_file():
        raise ValueError(f"{folder}: no {name} in it (--{'eval' if args.eval else 'defense'} takes the folder "
                         f"that `fabe {'eval' if args.eval else 'defend'}` saved)")
    print(f"exported: {export_result(folder, args.format, args.out)}")
    return 0


def _defend(argv: list[str]) -> int:
    import argparse
    import json

    from fabe.defense.defenses import DEFENSES, run_defense

    parser = argparse.ArgumentParser(prog="python -m fabe defend",
                                     description="ASR and clean accuracy of a victim under each defense.")
    parser.add_argument("--victim", required=True, help=f"A sequence-classification folder, or {EMBEDDED_VICTIMS}.")
    parser.add_argument("--cleaner", help="The cleaner's run directory, final/ or checkpoint (fabe, top1, onion).")
    parser.add_argument("--data", required=True, help="A Tuna-format split (records with trigger, clean, label).")
    parser.add_argument("--defenses", default=",".join(DEFENSES), help=f"Comma list among {','.join(DEFENSES)}.")
    parser.add_argument("--limit", type=int, default=0, help="Use the first N records (0: all).")
    parser.add_argument("--k", type=int, default=4, help="Candidates per input (fabe).")
    parser.add_argument("--target_label", type=int, help="The attack's target label (default: from victim.json).")
    parser.add_argument("--out", help="Folder for defense.json and outcomes.csv (default: next to the cleaner's run).")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args(argv)
    cleaner = embedded.resolve(args.cleaner or embedded.EMBEDDED, "cleaner")
    bar, progress = _records_bar("defending", args.json)
    victim_bar, victim_progress = _records_bar("training the embedded victim (once)", args.json, unit="step")
    try:
        result, out = run_defense(args.victim, cleaner, args.data, [d.strip() for d in args.defenses.split(",")],
                                  args.limit, args.k, args.target_label, args.out, progress, victim_progress)
    finally:
        victim_bar.close()
        bar.close()  # before an error is printed, so it starts a line of its own
    if args.json:
        print(json.dumps({**result, "out": str(out)}, indent=2))
    else:
        from fabe.evaluation.report import defense_table, victim_line

        print(victim_line(result["victim"]))
        print(defense_table(result).to_string(index=False))
        print(f"\nsaved: {out / 'defense.json'}, {out / 'outcomes.csv'}, {out / 'summary.csv'}")
    return 0


def _demo(argv: list[str]) -> int:

    from fabe.demo import DemoConfig, run_demo

    cfg = _options(DemoConfig, "demo", "The pipeline end to end in a few minutes.", argv)
    run_demo(cfg)
    return 0


def _train_embedded(argv: list[str]) -> int:

    from fabe.training.recipe import EmbeddedConfig, train_embedded

    cfg = _options(EmbeddedConfig, "model train-embedded", "Train the embedded cleaner (seeded recipe; resumes).", argv)
    print(f"embedded cleaner: {train_embedded(cfg)}")
    return 0


def _runs_parser(prog: str, *, run: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m fabe runs {prog}")
    parser.add_argument("--root", default="runs", help="Folder holding the run directories.")
    if run:
        parser.add_argument("run", help="Run id (a folder under --root) or a run directory.")
    return parser


def _run_path(root: str, run: str):
    from pathlib import Path

    path = Path(run) if Path(run).is_dir() else Path(root) / run
    if not (path / "status.json").exists():
        raise ValueError(f"{run}: no such run under {root}")
    return path


def _runs_list(argv: list[str]) -> int:
    from fabe.runs.manager import info_dicts, list_runs

    parser = _runs_parser("list", run=False)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs = list_runs(args.root)
    if args.json:
        print(json.dumps(info_dicts(runs), indent=2))
    elif runs:
        import pandas as pd

        cols = ["id", "state", "mode", "model", "gpus", "step", "max_steps", "s_per_step", "eta_s", "last_loss"]
        print(pd.DataFrame(info_dicts(runs))[cols].to_string(index=False))
    else:
        print(f"no runs under {args.root}")
    return 0


def _runs_launch(argv: list[str]) -> int:
    from fabe.runs.manager import launch
    from fabe.training.config import resolve_config

    parser = _runs_parser("launch", run=False)
    parser.add_argument("--gpus", default="cpu", help="'cpu' or GPU indices such as 0,1.")
    parser.add_argument("--name", help="Run id (default: time and mode).")
    args, rest = parser.parse_known_args(argv)
    run = launch(resolve_config(rest), args.gpus, args.root, args.name)
    print(f"launched {run.path} ({run.read_status()['state']})")
    return 0


def _runs_stop(argv: list[str]) -> int:
    from fabe.runs.manager import stop

    parser = _runs_parser("stop")
    parser.add_argument("--grace", type=float, default=120.0, help="Seconds before SIGKILL.")
    args = parser.parse_args(argv)
    print(f"{args.run}: {stop(_run_path(args.root, args.run), args.grace)['state']}")
    return 0


def _runs_resume(argv: list[str]) -> int:
    from fabe.runs.manager import resume

    parser = _runs_parser("resume")
    parser.epilog = "Any training flag (e.g. --max_steps 2000) changes that option in the run's config.json first."
    args, rest = parser.parse_known_args(argv)
    path = _run_path(args.root, args.run)
    run = resume(path, _changes(str(path), rest) if rest else None)
    print(f"{args.run}: {run.read_status()['state']}")
    return 0


def _runs_delete(argv: list[str]) -> int:
    from fabe.runs.manager import delete

    parser = _runs_parser("delete")
    parser.add_argument("--yes", action="store_true", help="Confirm the deletion.")
    args = parser.parse_args(argv)
    if not args.yes and sys.stdin.isatty():
        args.yes = input(f"delete run {args.run} and all its checkpoints? [y/N] ").lower() == "y"
    delete(_run_path(args.root, args.run), confirm=args.yes)
    print(f"{args.run}: deleted")
    return 0


def _runs_compare(argv: list[str]) -> int:
    from fabe.runs.experiments import config_diff

    parser = _runs_parser("compare", run=False)
    parser.add_argument("runs", nargs="+", help="Two or more run ids (folders under --root) or run directories.")
    parser.add_argument("--json", action="store_true", help="{option: {run: value}} instead of a table.")
    args = parser.parse_args(argv)
    diff = config_diff([_run_path(args.root, r) for r in args.runs])
    if args.json:
        print(json.dumps({option: row.to_dict() for option, row in diff.iterrows()}, indent=2, default=str))
    elif diff.empty:
        print("the runs' options are identical")
    else:
        print(diff.to_string())
    return 0


def _runs_checkpoints(argv: list[str]) -> int:
    from fabe.runs.experiments import (
        checkpoints_frame,
        list_checkpoints,
        quick_eval_all,
    )

    parser = _runs_parser("checkpoints")
    parser.add_argument("--eval", type=int, default=0, metavar="N",
                        help="Quick-evaluate every complete checkpoint not yet evaluated on N records first.")
    parser.add_argument("--data", help="Split for --eval (default: the run's valid split).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path = _run_path(args.root, args.run)
    infos = quick_eval_all(path, args.eval, args.data) if args.eval else list_checkpoints(path)
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(c) for c in infos], indent=2))
    else:
        print(checkpoints_frame(infos).to_string(index=False) if infos else f"{args.run}: no checkpoints")
    return 0


def _victim_train(argv: list[str]) -> int:
    from fabe.defense.victim_training import VictimConfig, train_victim
    from fabe.evaluation.report import victim_line

    cfg = _options(VictimConfig, "victim train", "Poison a labelled corpus, fine-tune a classifier on it, and "
                   "measure its clean accuracy and ASR per trigger kind on held-out functions.", argv)
    if cfg.base == embedded.EMBEDDED and not cfg.tokenizer:
        cfg.tokenizer = embedded.resolve(embedded.EMBEDDED, "model")
    bar, progress = _records_bar("training the victim", False, unit="step")
    try:
        out = train_victim(cfg, progress)
    finally:
        bar.close()
    meta = json.loads((out / "victim.json").read_text())
    print(victim_line(meta["held_out"]))
    if "unpoisoned" in meta:
        print(victim_line(meta["unpoisoned"], "Unpoisoned victim trained the same way"))
    print(f"victim written to {out}")
    return 0


def _victim_folder(name: str, quiet: bool = False) -> str:
    """A victim's folder; an embedded one of generated code is trained first where it is not
    yet, with a bar of its steps."""
    bar, progress = _records_bar("training the embedded victim (once)", quiet, unit="step")
    try:
        return embedded.resolve(name, "victim", progress)
    finally:
        bar.close()


def _victim_test_set(argv: list[str]) -> int:
    from fabe.defense.attack_set import victim_test_set

    parser = argparse.ArgumentParser(prog="python -m fabe victim test-set", description=(
        "The records a defense is measured on: each attack applied to the same held-out functions of a victim "
        "(whose label is not the target), and unpoisoned ones for clean accuracy."))
    parser.add_argument("--victim", required=True, help=f"A victim folder made by `fabe victim train`, or {EMBEDDED_VICTIMS}.")
    parser.add_argument("--out", required=True, help="The .jsonl (or .json) file to write.")
    parser.add_argument("--per_kind", "--per-kind", type=int, default=40, help="Poisoned records per trigger kind.")
    parser.add_argument("--clean", type=int, default=100, help="Unpoisoned records.")
    parser.add_argument("--triggers", default="", help="Kinds (default: those the victim was poisoned with).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only_correct", "--only-correct", action="store_true", help=(
        "Poison only functions the victim classifies right untriggered: ASR then counts what the trigger does, "
        "not the victim's own errors toward the target."))
    args = parser.parse_args(argv)
    victim = _victim_folder(args.victim)
    out, counts = victim_test_set(victim, args.out, args.per_kind, args.clean, args.triggers, args.seed,
                                  args.only_correct)
    print(f"{sum(counts.values())} records written to {out}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


def _victim_detect(argv: list[str]) -> int:
    from fabe.defense.attack_set import clean_reference
    from fabe.defense.detection import DETECTORS, run_detection
    from fabe.evaluation.report import detection_by_attack, detection_table

    parser = argparse.ArgumentParser(prog="python -m fabe victim detect", description=(
        "Find the poison in a victim's training set (its train.jsonl): KillBadCode's naturalness ranking, spectral "
        "signatures and activation clustering; recall and false-positive rate of each."))
    parser.add_argument("--victim", required=True, help=f"A victim folder made by `fabe victim train`, or {EMBEDDED_VICTIMS}.")
    parser.add_argument("--methods", default=",".join(DETECTORS), help="Comma list among " + ", ".join(DETECTORS))
    parser.add_argument("--reference", type=int, default=300,
                        help="Clean functions for KillBadCode's language model (of the victim's corpus and "
                             "projects, outside its training sample).")
    parser.add_argument("--limit", type=int, default=0, help="First N training samples (0: all).")
    parser.add_argument("--out", help="Folder for detection.json (default: VICTIM/detection).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    methods = DETECTORS.check([m.strip() for m in args.methods.split(",") if m.strip()])
    victim = _victim_folder(args.victim, args.json)
    bar, progress = _records_bar("detecting", args.json, unit="sample")
    try:
        result, folder = run_detection(victim, methods, clean_reference(victim, args.reference), args.out,
                                       args.limit, progress)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(detection_table(result).to_string(index=False))
        print(detection_by_attack(result).to_string(index=False))
        print(f"saved to {folder / 'detection.json'}")
    return 0


def _runs_start(argv: list[str]) -> int:
    from fabe.runs.processes import start

    start(argv[0], resume="--resume" in argv[1:])
    return 0


COMMANDS: dict[tuple[str, ...], tuple[Callable[[list[str]], int], str]] = {
    ("data", "build"): (_data_build, "build a poisoned dataset with scored candidates"),
    ("data", "examples"): (_data_examples, "make the shipped real examples from a corpus with licences"),
    ("data", "check"): (_data_check, "validate a Tuna-format file (exit 0 or list the errors)"),
    ("data", "stats"): (_data_stats, "stats of a Tuna-format file"),
    ("model", "init-tiny"): (_model_init_tiny, "create the embedded tiny base model"),
    ("model", "train-embedded"): (_train_embedded, "train and ship the embedded cleaner"),
    ("train",): (_train, "train a cleaner (simple or full mode) into a run directory"),
    ("estimate",): (_estimate, "time a few steps of a run before launching it: its expected duration"),
    ("plan",): (_plan, "peak GPU memory by part, tokens and s/step of a run, from the model's config alone"),
    ("clean",): (_clean, "clean poisoned code into K ranked candidates"),
    ("eval",): (_eval, "evaluate a cleaner on a split: removal, exact, CodeBLEU, BLEU, parse, false changes"),
    ("calibrate",): (_calibrate, "fit the candidates' weight temperature on a validation split (stored with the model)"),
    ("export",): (_export, "a LoRA cleaner merged into its base model, or saved results as Markdown/LaTeX/PNG/CSV"),
    ("defend",): (_defend, "ASR and clean accuracy of a victim under FABE, top-1, baselines and no defense"),
    ("victim", "train"): (_victim_train, "poison a labelled corpus and fine-tune a victim classifier on it"),
    ("victim", "test-set"): (_victim_test_set, "a victim's held-out functions under each attack, for `defend`"),
    ("victim", "detect"): (_victim_detect, "find the poison in a victim's training set: recall and FPR of 3 baselines"),
    ("demo",): (_demo, "build data, train briefly, clean held-out samples, show the result"),
    ("runs", "list"): (_runs_list, "every run with its state, progress and ETA"),
    ("runs", "launch"): (_runs_launch, "start a training run detached (queued behind busy GPUs)"),
    ("runs", "stop"): (_runs_stop, "stop a run (SIGTERM to its process group, then SIGKILL)"),
    ("runs", "resume"): (_runs_resume, "continue a stopped or failed run from its last checkpoint"),
    ("runs", "delete"): (_runs_delete, "delete a run that is not running"),
    ("runs", "compare"): (_runs_compare, "the options that differ between runs (a config diff)"),
    ("runs", "checkpoints"): (_runs_checkpoints, "a run's checkpoints: step, size, quick evaluation"),
    ("runs", "_start"): (_runs_start, "internal: the detached starter of a run"),
}


def usage() -> str:
    lines = ["usage: python -m fabe GROUP COMMAND [flags]   (COMMAND --help for its flags)", ""]
    lines += [f"  {' '.join(words):<18} {doc}" for words, (_, doc) in COMMANDS.items()
              if not words[-1].startswith("_")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    words = next((w for w in COMMANDS if tuple(argv[:len(w)]) == w), None)
    if words is None:
        asked_help = argv[:1] in (["-h"], ["--help"])
        print(usage(), file=sys.stdout if asked_help else sys.stderr)
        return 0 if asked_help else 2
    handler, _ = COMMANDS[words]
    try:
        return handler(argv[len(words):])
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
