"""The `tsjax` command line: `tsjax sweep`, `tsjax fit`, `tsjax report`, `tsjax info`."""

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsjax", description="Train grids of RNNs on k-delay recall and fit the "
                                  "dense-to-sparse phase transition.")
    commands = parser.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="train every grid point of a sweep config")
    sweep.add_argument("config", help="path to a sweep config (TOML)")
    sweep.add_argument("--out", help="results directory (default: results/<sweep name>)")
    sweep.add_argument("--overwrite", action="store_true",
                       help="delete tsjax's results in the output directory, whatever "
                            "config wrote them, and start the sweep again")
    sweep.add_argument("--chunk-size", type=int,
                       help="models per compiled call (default: from the memory budget); "
                            "a resumed sweep keeps the size it started with unless this "
                            "option changes")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.add_argument("--coordinator", metavar="HOST:PORT",
                       help="join a multi-process run (jax.distributed) whose process 0 "
                            "listens at HOST:PORT; default: $TSJAX_COORDINATOR")
    sweep.add_argument("--num-processes", type=int,
                       help="number of processes in the run; default: $TSJAX_NUM_PROCESSES")
    sweep.add_argument("--process-id", type=int,
                       help="index of this process, 0 to num-processes - 1; "
                            "default: $TSJAX_PROCESS_ID")

    fit = commands.add_parser("fit", help="fit the phase transition of a results directory")
    fit.add_argument("results_dir", help="directory written by `tsjax sweep`")
    fit.add_argument("--seeds", choices=("best", "live"), default="best",
                     help="best: lowest-loss live seed per grid point; live: every ok seed")

    report = commands.add_parser(
        "report", help="write figures and a Markdown report of a results directory to "
                       "RESULTS_DIR/_analysis/report.md")
    report.add_argument("results_dir", help="directory written by `tsjax sweep`")
    report.add_argument("--seeds", choices=("best", "live"), default="best",
                        help="best: lowest-loss live seed per grid point; live: every ok seed")

    info = commands.add_parser("info", help="show a config's grid without training")
    info.add_argument("config", help="path to a sweep config (TOML)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="tsjax: %(levelname)s: %(message)s", level=logging.WARNING)
    handlers = {"sweep": _sweep, "fit": _fit, "report": _report, "info": _info}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("tsjax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(message: str) -> int:
    print(f"tsjax: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _sweep(args) -> int:
    from tsjax.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _fail(str(error))
    if args.chunk_size is not None and args.chunk_size < 1:
        return _fail(f"option '--chunk-size' = {args.chunk_size} is invalid; "
                     "expected an integer >= 1")

    from tsjax import distributed
    from tsjax.dataset import ResultsDirError
    from tsjax.sweep import SweepFailed, SweepInterrupted, default_out, run_sweep

    # Both must run before JAX starts its backends, that is before any training.
    distributed.use_cpu_cores()
    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as error:
        return _fail(str(error))
    except RuntimeError as error:
        coordinator = args.coordinator or os.environ.get(distributed.COORDINATOR_VARIABLE)
        return _fail(f"failed to join the run at coordinator {coordinator!r} "
                     f"({str(error).strip().splitlines()[0]}); start process 0 first and "
                     "check the address")

    try:
        summary = run_sweep(config, args.out, overwrite=args.overwrite,
                            chunk_size=args.chunk_size, progress=not args.no_progress)
    except (ResultsDirError, SweepFailed) as error:
        return _fail(str(error))
    except SweepInterrupted as error:
        out = args.out if args.out is not None else str(default_out(config))
        command = ["tsjax", "sweep", args.config, "--out", out]
        if args.chunk_size is not None:
            command += ["--chunk-size", str(args.chunk_size)]
        print(f"tsjax: {error}: {shlex.join(command)}", file=sys.stderr)
        return 128 + error.signal_number
    print(summary.describe())
    return 0


def _fit(args) -> int:
    from analysis import write_fit

    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        return _fail(f"results directory '{results_dir}' not found")
    try:
        report = write_fit(results_dir, seeds=args.seeds)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    print(report)
    return 0


def _report(args) -> int:
    from analysis.report import write_report

    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        return _fail(f"results directory '{results_dir}' not found")
    try:
        report = write_report(results_dir, seeds=args.seeds)
    except (FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    print(f"wrote {report.paths[-1]} with {sum(path.suffix == '.png' for path in report.paths)} figures")
    return 0


def _info(args) -> int:
    from tsjax.config import ConfigError, load_config
    from tsjax.grid import expand_grid

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _fail(str(error))
    groups = expand_grid(config)
    print(f"sweep {config.name}: {config.grid_size} models in {len(groups)} static groups")
    for group in groups:
        print(f"  {len(group):6d} models  {group.spec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
