"""The `tsjax` command line: `tsjax sweep`, `tsjax fit`, `tsjax report`, `tsjax info`."""

import argparse
import importlib.metadata
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

# `fit` and `report` exit with EXIT_NO_FIT when they wrote their outputs but no
# transition fit converged, so scripts notice a sweep that did not resolve the step.
EXIT_NO_FIT = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
# `tsjax info` lists at most this many values of an axis, then the first and last few.
INFO_MAX_VALUES = 24


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsjax", description="Train grids of RNNs on k-delay recall and fit the "
                                  "dense-to-sparse phase transition.")
    parser.add_argument("--version", action="version", version=f"tsjax {_version()}")
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

    fit = commands.add_parser(
        "fit", help="fit the phase transition of a results directory",
        description="Fit a sigmoid of each order parameter (k_theta_deg, spectral_radius) "
                    "against sparsity per group, print the table and write it with plots "
                    "to RESULTS_DIR/_analysis/. A missing order-parameter column is skipped "
                    "with a warning. Exit status: 0 when at least one fit converged, 1 "
                    "when none did (the tables are still written, because failed fits are "
                    "data), 2 on errors.")
    fit.add_argument("results_dir", help="directory written by `tsjax sweep`")
    fit.add_argument("--seeds", choices=("best", "live"), default="best",
                     help="best: lowest-loss live seed per grid point; live: every ok seed")

    report = commands.add_parser(
        "report", help="write figures and a Markdown report of a results directory to "
                       "RESULTS_DIR/_analysis/report.md",
        description="Write figures, tables and a Markdown report of a results directory to "
                    "RESULTS_DIR/_analysis/report.md. Exit status: 0 on success, 1 when "
                    "the report has transition fits but none converged (the report is "
                    "still written), 2 on errors.")
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
        code = handlers[args.command](args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("tsjax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout exited early, as in `tsjax info CONFIG | head`. Point
        # stdout at /dev/null so the flush at interpreter exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _version() -> str:
    try:
        return importlib.metadata.version("tsjax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _fail(message: str) -> int:
    print(f"tsjax: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _warn(message: str) -> None:
    print(f"tsjax: warning: {message}", file=sys.stderr)


def _describe_os_error(error: OSError) -> str:
    """Return a one-line message naming the path of an OSError, when it has one.

    A failed rename names its target (`filename2`), not the temporary file renamed.
    """
    path = error.filename2 if error.filename2 is not None else error.filename
    if path is None:
        return str(error)
    return f"{path}: {error.strerror or error}"


def _check_results_dir(path: Path) -> str | None:
    """Return why `path` cannot be a results directory, or None when it can."""
    if path.is_dir():
        return None
    if path.exists():
        return (f"results path '{path}' is not a directory; pass the directory written by "
                "tsjax sweep")
    return f"results directory '{path}' not found"


def _sweep(args) -> int:
    from tsjax.config import ConfigError, load_config

    if args.out is not None and not args.out:
        return _fail("option '--out' is empty; give a directory path, or leave it out to "
                     "write to results/<sweep name>")
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
    problem = _check_results_dir(results_dir)
    if problem is not None:
        return _fail(problem)
    try:
        report = write_fit(results_dir, seeds=args.seeds)
    except ValueError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(_describe_os_error(error))
    for reason in report.skipped.values():
        _warn(reason)
    print(report)
    if not report.any_converged:
        _warn(f"no fit converged for any order parameter in {results_dir}; see the status "
              "column for each group's reason")
        return EXIT_NO_FIT
    return 0


def _report(args) -> int:
    from analysis.report import write_report

    results_dir = Path(args.results_dir)
    problem = _check_results_dir(results_dir)
    if problem is not None:
        return _fail(problem)
    try:
        report = write_report(results_dir, seeds=args.seeds)
    except ValueError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(_describe_os_error(error))
    print(f"wrote {report.paths[-1]} with {sum(path.suffix == '.png' for path in report.paths)} figures")
    # The report stores each transition fit table as "fit_<order parameter>".
    fits = [table for name, table in report.tables.items() if name.startswith("fit_")]
    if fits and not any(table["converged"].astype(bool).any() for table in fits):
        _warn(f"no transition fit converged for any order parameter in {results_dir}; see "
              "the message column of the fit tables in the report")
        return EXIT_NO_FIT
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
    if config.expected_cpu_minutes is not None:
        print(f"expected CPU time: {config.expected_cpu_minutes:g} minutes (the config's estimate)")
    print("axes:")
    for name, values in config.axes.items():
        print(f"  {name} = {_format_axis(values)}")
    print("static groups:")
    for group in groups:
        print(f"  {len(group):6d} models  {group.spec}")
    return 0


def _format_axis(values: tuple) -> str:
    """Format an axis's values as TOML: one value as a scalar, more as an array whose
    middle is elided beyond INFO_MAX_VALUES."""
    if values == (None,):
        return "(set by model)"
    shown = [_toml_value(value) for value in values]
    if len(shown) == 1:
        return shown[0]
    if len(shown) > INFO_MAX_VALUES:
        shown = [*shown[:4], "...", *shown[-2:]]
        return f"[{', '.join(shown)}]  ({len(values)} values)"
    return f"[{', '.join(shown)}]"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
