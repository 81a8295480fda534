"""`rokt-pipeline schema`: the JSON Schema of a job file, for editors (docs/job-file.md says how to use it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(commands: Any) -> None:
    schema = commands.add_parser(
        "schema", help="print the JSON Schema of a job file, for editors to complete and check job files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prints the JSON Schema of a job file, generated from the models that load it.\n"
                    "An editor pointed at it completes keys, explains each one, and marks a\n"
                    "misspelt key:\n\n"
                    "  rokt-pipeline schema > job-file.schema.json\n\n"
                    "then, on the first line of a job file (VS Code with the YAML extension):\n\n"
                    "  # yaml-language-server: $schema=job-file.schema.json\n\n"
                    "rokt-pipeline validate JOB.yaml makes the checks across keys, and reads the input.")
    schema.set_defaults(command=_schema)


def _schema(args: argparse.Namespace) -> int:
    from pipeline.job_schema import job_file_schema_text

    sys.stdout.write(job_file_schema_text())
    return 0
