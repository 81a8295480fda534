"""The entry point: the parser (one positional JOB file for every command that takes one), errors and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from pipeline.cli import audit, follow_up, sandbox, schema, sending
from pipeline.cli.common import Terminated
from pipeline.errors import PipelineError
from pipeline.logs import configure_logging
from pipeline.version import __version__

log = logging.getLogger("pipeline.cli")


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run_and_exit() -> None:
    """The console entry point: main(), then leave the process without tearing the interpreter down.

    Everything a command writes is closed before main() returns; what is still buffered is flushed here.
    Python's teardown of polars, numpy and a large run's data took 0.15-0.3 s after every command (a seventh
    of a 1M-row dry run) and does nothing the next process needs.
    """
    signal.signal(signal.SIGTERM, _terminated)  # here, not in main(): a process-wide choice, not a library's
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"), getattr(args, "verbose", False))
    try:
        return args.command(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: run again with the same --run-id to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: run again with the same --run-id to resume", file=sys.stderr)
        return 143
    except OSError as exc:  # the machine, not the data: a full disk, a permission, a vanished directory
        print(f"error: {exc}; fix that and run again with the same --run-id to resume", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: say so plainly; details only when asked for
        if getattr(args, "verbose", False):
            log.exception("unexpected error")
        print(f"error: unexpected {type(exc).__name__}; rerun with --verbose for details", file=sys.stderr)
        return 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rokt-pipeline", description="Deliver customer and suppression files into Rokt's APIs, and account for it.",
        epilog="Every command that takes a job file takes it first: rokt-pipeline COMMAND JOB.yaml [options].")
    parser.add_argument("--version", action="version", version=f"rokt-pipeline {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in (sending, audit, follow_up, sandbox, schema):
        module.add_commands(commands)
    return parser
