"""One run's delivery: the prepared batches go out through the HTTP layer and every outcome goes into the ledger.

    run.py       send_batches(): resume decisions, the sending threads, the summary's send counts
    dispatch.py  hands batches to the sending threads; ends cleanly on a stop, Ctrl-C or SIGTERM
    batch.py     one batch: send it (or record a dry run), complete its IDs, record the outcome, count it
    resume.py    what the ledger already holds under this run id: accepted requests, sends never recorded
    lines.py     the manifest lines a run appends (never a raw identifier)
    tally.py     the run's counts, kept in one place
"""

from pipeline.send.run import send_batches

__all__ = ["send_batches"]
