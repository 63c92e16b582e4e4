"""Command line: ``asc train | cv | sweep | compare | ensemble | predict | attention | export | bench | data check |
synth | baseline | config show``.

Every command that runs an experiment takes ``[--config FILE] [key=value ...]``.  User
mistakes (unknown keys, missing folders, bad files) print one ``error:`` line and exit 2.

Each subcommand's arguments are one ``_<name>_parser`` function below (listed in
:data:`SUBCOMMANDS`); the experiment commands' ``cmd_*`` functions are here, the tools'
in :mod:`asc.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asc import commands
from asc.console import close_interrupted_wandb_run, quiet

RESUME_HINT = ("finished folds and the last checkpoint (at most one epoch old) are kept; run the same command "
               "again to resume")


def _command_line() -> str:
    """This command as the user can type it again: ``asc ...``, or the path it was started
    by (``.venv/bin/asc`` from ``make demo``) where ``asc`` on the PATH is not this one."""
    import shlex
    import shutil

    program = "asc"  # also for python -m asc.cli
    if os.path.basename(sys.argv[0]) == "asc":
        on_path = shutil.which("asc")
        if not on_path or os.path.realpath(on_path) != os.path.realpath(sys.argv[0]):
            program = sys.argv[0]  # the shell's asc is another one (or none)
    return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse's own error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config merged over the defaults (e.g. experiments/demo.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. trainer.max_epochs=5")


def cmd_cv(args, only_first: bool = False) -> int:
    from asc.config import load_config
    from asc.experiment import run_cv
    from asc.sweep import agent_overrides

    # under `wandb agent`: this run's own experiment name, from its sweep parameters
    cfg = load_config(args.config, list(args.overrides) + agent_overrides(args.config, args.overrides))
    run_cv(cfg, only_first=only_first)
    return 0


def cmd_sweep(args) -> int:
    from asc.errors import AscError
    from asc.sweep import run_local

    if not args.local:
        raise AscError(f"online sweeps run through W&B: `wandb sweep {args.file}` then `wandb agent <sweep id>`; "
                       "add --local to expand and run the sweep here without W&B servers")
    if args.count is not None and args.count < 1:
        raise AscError(f"--count {args.count}: give at least 1 run (or leave --count out for the whole sweep)")
    _, failed = run_local(args.file, args.count, args.overrides, args.parallel)
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from asc.bench import SECTIONS, format_result, run
    from asc.errors import AscError

    unknown = [name for name in args.sections or [] if name not in SECTIONS]
    if unknown:
        raise AscError(f"--sections: no section named {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")

    result = run(args.device, Path(args.out), quick=args.quick, compile_check=not args.no_compile,
                 sections=args.sections, fold_overrides=args.set)
    print(format_result(result))
    print(f"\nJSON: {args.out}")
    return 0


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train and test one fold (the first of cv.folds)")
    _config_args(p)
    p.set_defaults(func=lambda a: cmd_cv(a, only_first=True))


def _cv_parser(sub) -> None:
    p = sub.add_parser("cv", help="run every fold (or cv.folds), print a table, write results.json")
    _config_args(p)
    p.set_defaults(func=cmd_cv)


def _synth_parser(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic scenes as WAV files with meta.csv")
    p.add_argument("--out", required=True, help="output folder")
    _config_args(p)
    p.set_defaults(func=commands.cmd_synth)


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a W&B-format sweep file locally (--local): every configuration "
                       "as an `asc cv`, then a ranked comparison table")
    p.add_argument("file", help="sweep file, e.g. experiments/sweeps/pooling_ablation.yaml")
    p.add_argument("--local", action="store_true", help="expand grid/random sweeps here, no W&B servers needed")
    p.add_argument("--count", type=int, help="number of runs (random: draws, default 10; grid: the first N)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="with --local: run N configurations at once, each an `asc cv` process (1 CPU thread each "
                   "on a CPU; output in <run>/log.txt); default 1, one after the other in this process")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides applied to every run; one naming a sweep parameter (seed=1) runs only that "
                   "value's part of the sweep")
    p.set_defaults(func=cmd_sweep)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify audio files or folders with a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by asc train/cv, or the W&B run id of a fold")
    p.add_argument("paths", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    p.add_argument("--top-k", type=_positive_int, default=3, help="classes listed per file (default 3)")
    p.add_argument("--attention", action="store_true", help="also write one attention PNG per file")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--batch-segments", type=_positive_int, default=64, help="segments per forward pass (memory bound)")
    p.set_defaults(func=commands.cmd_predict)


def _attention_parser(sub) -> None:
    p = sub.add_parser("attention", help="how attention spreads over time and features on a checkpoint's test "
                       "clips and, on the synthetic scenes, how much of it falls on the class events (several "
                       "checkpoints are compared)")
    p.add_argument("--checkpoint", action="append", help="repeat to compare checkpoints")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two checkpoints' attention on the same test "
                   "clips (one per class), side by side: one picture per clip and compare.json")
    p.add_argument("--out", default="attention", help="output folder (default: ./attention)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=commands.cmd_attention)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export network + front-end as ONNX or TorchScript")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    p.add_argument("--out", help="output file (default: next to the checkpoint)")
    p.set_defaults(func=commands.cmd_export)


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="front-end and training throughput, memory (prints a table, writes JSON)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", default="bench.json", help="JSON output (default: ./bench.json)")
    p.add_argument("--quick", action="store_true", help="fewer steps and clips, float32 only (smoke test)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile check")
    p.add_argument("--sections", nargs="+", metavar="NAME",
                   help="run only these sections, in the usual order (complexity, frontends, loader, training, "
                        "step_profile, litis_fold, pictures, litis_parallel, parallel_folds, compile; default: all)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for the LITIS-shaped folds (sections litis_fold and litis_parallel; "
                        "their config is otherwise the frozen litis_b6efd54.yaml), e.g. model.compile=reduce-overhead")
    p.set_defaults(func=cmd_bench)


def _compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="paired difference of two experiments over (seed, fold), with a 90 %% "
                       "interval (Nadeau-Bengio corrected when the pairs span several folds, whose training "
                       "sets overlap)")
    p.add_argument("--a", nargs="+", required=True,
                   help="experiment folders of side A (one per seed), e.g. runs/stap-s*")
    p.add_argument("--b", nargs="+", required=True, help="experiment folders of side B, same seeds and folds")
    p.add_argument("--metric", default="test/acc", help="a per-fold key of results.json (default test/acc)")
    p.add_argument("--level", type=float, default=0.90, help="interval coverage (default 0.90)")
    correction = p.add_mutually_exclusive_group()
    correction.add_argument("--corrected", action="store_true", help="force the Nadeau-Bengio correction "
                            "(default: on when the pairs span several folds, off for the seeds of one fold)")
    correction.add_argument("--uncorrected", action="store_true",
                            help="a plain paired t interval, as if every (seed, fold) pair were independent")
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.set_defaults(func=commands.cmd_compare)


def _ensemble_parser(sub) -> None:
    p = sub.add_parser("ensemble", help="test accuracy of averaging several experiments' probabilities, fold by "
                       "fold (e.g. the seeds of one recipe), beside each one's own")
    p.add_argument("runs", nargs="+", help="experiment folders of the same protocol, e.g. runs/stap-s*")
    p.add_argument("--json", help="also write the result as JSON to this file")
    p.set_defaults(func=commands.cmd_ensemble)


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="data set tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="scan a data set: clips per class and fold, durations, rates, "
                            "channels, every problem file (exit status 1 when there are problems)")
    _config_args(p)
    p.set_defaults(func=commands.cmd_data_check)


def _config_parser(sub) -> None:
    p = sub.add_parser("config", help="config tools")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    p = config_sub.add_parser("show", help="print the resolved config (defaults <- --config <- key=value), each "
                              "key with its documentation, without running anything")
    _config_args(p)
    p.set_defaults(func=commands.cmd_config_show)


def _baseline_parser(sub) -> None:
    p = sub.add_parser("baseline", help="bag-of-frames baseline (logistic regression on clip-mean spectra)")
    _config_args(p)
    p.set_defaults(func=commands.cmd_baseline)


# One function per subcommand (its arguments and its cmd_* function), in the order of `asc --help`.
SUBCOMMANDS = (_train_parser, _cv_parser, _synth_parser, _sweep_parser, _predict_parser, _attention_parser,
               _export_parser, _bench_parser, _compare_parser, _ensemble_parser, _data_parser, _config_parser,
               _baseline_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asc", description="Acoustic scene classification experiments "
                                     "(STAP-CRNN, BC learning, cross-validation, W&B).")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from asc.errors import AscError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (asc sweep FILE --local key=value)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet()
    try:
        return args.func(args)
    except AscError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close_interrupted_wandb_run(130)
        print(f"\ninterrupted: {RESUME_HINT}: {_command_line()}", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if not _out_of_memory(e):
            raise
        close_interrupted_wandb_run(1)
        print(f"error: the device ran out of memory ({str(e).splitlines()[0][:160]}); lower data.batch_size (or "
              "data.eval_batch_size for evaluation), keep the audio off the device with data.on_device=off, or run "
              f"fewer folds at once (cv.parallel_folds); {RESUME_HINT}: {_command_line()}", file=sys.stderr)
        return 1
    except SystemExit as e:
        if type(e).__name__ == "SIGTERMException":  # Lightning stops the fit loop on SIGTERM
            close_interrupted_wandb_run(143)
            print(f"\nstopped by SIGTERM: {RESUME_HINT}: {_command_line()}", file=sys.stderr)
            return 143
        raise
    finally:
        _close_process_group()


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device running out of memory (torch.OutOfMemoryError, raised
    for CUDA and other accelerators; a RuntimeError)."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return (oom is not None and isinstance(error, oom)) or "out of memory" in str(error).lower()[:200]


def _close_process_group() -> None:
    """Destroy the DDP process group, if a run started one, before the interpreter exits:
    left to static destruction, gloo's threads can abort the process ("terminate called
    without an active exception")."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - never hide the command's own outcome
        print(f"warning: closing the DDP process group failed ({e})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
