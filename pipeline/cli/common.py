"""What every command shares: the job file argument (first, `COMMAND JOB.yaml`), the common options, and the
exception SIGTERM raises."""

from __future__ import annotations

import argparse

from pipeline.errors import ConfigError


class Terminated(BaseException):
    """SIGTERM, the way Kubernetes, systemd or a batch scheduler stops a job: handled like Ctrl-C, so the requests
    already sent are answered and recorded before the process ends (a BaseException, as KeyboardInterrupt is)."""


def add_job(parser: argparse.ArgumentParser, about: str = "the job's YAML file") -> None:
    """The job file, first: `COMMAND JOB.yaml`; `--config JOB.yaml` is kept as another way to give it."""
    parser.add_argument("job", nargs="?", metavar="JOB", help=about)
    parser.add_argument("--config", dest="job_option", metavar="JOB", help=argparse.SUPPRESS)


def job_file(args: argparse.Namespace) -> str:
    given = [path for path in (args.job, args.job_option) if path]
    if len(given) != 1:
        raise ConfigError("give the job file first: rokt-pipeline COMMAND JOB.yaml" if not given else
                          "give the job file once (JOB, or --config JOB)")
    return given[0]


def add_common(parser: argparse.ArgumentParser, json_output: str | None = None) -> None:
    """Options every command has; `json_output` says what --json prints, for commands that print a table."""
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines on stderr as text (default) or one JSON object a line, for a log collector")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at DEBUG level too (adds the HTTP library's connection and request lines)")
    if json_output:
        parser.add_argument("--json", action="store_true", help=json_output)
