"""`rokt-pipeline`: one command for each thing a data engineer or a data-protection officer does with a job.

    entry.py      the entry point, the parser, errors and exit codes
    common.py     the job file argument and the options every command has
    sending.py    run, validate
    audit.py      status, runs, lookup, audit export (outputs only: no secret needed)
    follow_up.py  deletions (list, cancel, sync) and state (show, rollback)
    sandbox.py    the local emulator
    schema.py     the job file's JSON Schema
"""

from pipeline.cli.common import Terminated
from pipeline.cli.entry import main, run_and_exit

__all__ = ["Terminated", "main", "run_and_exit"]
