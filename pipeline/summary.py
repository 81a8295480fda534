"""What a run did, as summary.json says it and the command line reports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.storage import is_s3

EXIT_OUT_OF_TIME = 75  # sysexits' EX_TEMPFAIL: not finished, try again later


@dataclass
class RunSummary:
    run_id: str
    job: str
    endpoint: str
    dry_run: bool
    output_dir: str
    attempt: int = 0  # 1 for a run's first attempt, 2 for its first resume, ...
    rows_read: int = 0
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    superseded: int = 0
    identifiers: int = 0
    identifiers_sent: int = 0
    identifiers_accepted: int = 0
    identifiers_left: int = 0  # valid identifiers not accepted in this run or an earlier one with the same run id
    requests: int = 0
    retries: int = 0
    ambiguous: int = 0
    batches: int = 0
    batches_by_status: dict[str, int] = field(default_factory=dict)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    estimated_send_seconds: float | None = None
    stopped_reason: str | None = None
    max_duration_reached: bool = False  # stopped by destination.max_duration / --max-duration: resume to carry on
    # The rate the run kept to, in the limit's unit: the limit, the lowest it slowed to after throttling, at the end.
    sending_rate: dict[str, Any] | None = None
    manifest_torn_lines: int = 0
    source_fingerprint: str = ""
    source_files: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    sync: dict[str, Any] | None = None  # incremental / mirror: the plan against the destination's state, and its outcome
    destination: dict[str, Any] = field(default_factory=dict)  # where the requests went, in plain words
    # The run sent nothing: this export had been delivered to this destination by another run (delivery register).
    already_delivered_by: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 every batch accepted; 75 (EX_TEMPFAIL) out of time, a rerun with the same run id carries on; 1 otherwise."""
        if self.max_duration_reached:
            return EXIT_OUT_OF_TIME
        return 1 if unfinished_batches(self.batches_by_status) or self.stopped_reason else 0

    @property
    def manifest(self) -> str:
        """Where the ledger lines are: a file locally, segment objects on S3."""
        return f"{self.output_dir}/manifest/" if is_s3(self.output_dir) else f"{self.output_dir}/manifest.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"manifest": self.manifest}


def unfinished_batches(batches_by_status: dict[str, int]) -> int:
    """Batches a run did not deliver (failed, rejected, not sent), from a summary's `batches_by_status`."""
    return sum(n for status, n in batches_by_status.items() if status not in ("accepted", "already_accepted", "dry_run"))
