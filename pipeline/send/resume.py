"""What an earlier attempt under the same run id already did, as its ledger records it, and what that means now.

A batch (or, for one-subject endpoints, a subject) accepted for this destination is not sent again. A request
whose sending is on record but whose answer is not (the process died in between) may have been acted on: sent
again, it is flagged ambiguous.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.batching import Batch
from pipeline.endpoints.base import Endpoint
from pipeline.ledger import SENDING, LedgerBase

log = logging.getLogger(__name__)


class Resume:
    def __init__(self, ledger: LedgerBase, endpoint: Endpoint, *, tracks_sending: bool):
        """`tracks_sending`: the run records each request before it is sent (endpoints that are not idempotent)."""
        self.endpoint = endpoint
        one_subject = endpoint.spec.one_subject
        self._accepted_batches = {} if one_subject else ledger.accepted_batches(endpoint.counts_for_resume)
        self._accepted_subjects = (ledger.accepted_subjects(endpoint.resume_keys_covered, endpoint.counts_for_resume)
                                   if one_subject else set())
        self.skipped = len(ledger.accepted(endpoint.counts_for_resume)) if one_subject else len(self._accepted_batches)
        self.unrecorded = unrecorded_attempts(ledger.records, endpoint) if tracks_sending else {}
        elsewhere = sum(1 for r in ledger.accepted() if not endpoint.same_target(r))
        if elsewhere:
            log.warning("%d request(s) accepted under this run id went to another destination (the job's endpoint, URL, "
                        "account, list, action or mode has changed since): they do not count here, so their identifiers "
                        "are sent to this one", elsewhere)

    def already_accepted(self, batch: Batch) -> bool:
        if self.endpoint.spec.one_subject:
            return self.endpoint.resume_key(batch) in self._accepted_subjects
        accepted_digest = self._accepted_batches.get(batch.index)
        if accepted_digest is None:
            return False
        if accepted_digest != batch.digest:
            log.warning("batch %d differs from the one accepted under this run id (the input changed): sending it", batch.index)
            return False
        return True

    def sent_unrecorded(self, batch: Batch) -> str | None:
        """When an earlier attempt sent this request without recording its answer; None if it did not."""
        return self.unrecorded.get(_request_key(self.endpoint, batch))


def _request_key(endpoint: Endpoint, batch: Batch) -> Any:
    # A one-subject request by its resume key, a batch by number and digest: as unrecorded_attempts keys them.
    return endpoint.resume_key(batch) if endpoint.spec.one_subject else (batch.index, batch.digest)


def unrecorded_attempts(records: list[dict[str, Any]], endpoint: Endpoint) -> dict[Any, str]:
    """Requests of this target whose sending is in the manifest but not their outcome -> when they were sent."""
    pending: dict[Any, str] = {}
    for record in records:
        if "batch" not in record or not endpoint.same_target(record):
            continue
        key = endpoint.resume_keys_covered(record)[0] if endpoint.spec.one_subject else (record["batch"], record["digest"])
        if record.get("record") == SENDING:
            pending[key] = record["started_at"]
        elif record.get("status", "dry_run") != "dry_run":
            pending.pop(key, None)
    return pending


def identifiers_left(ledger: LedgerBase, endpoint: Endpoint, identifiers: int) -> int:
    """Valid identifiers not accepted under this run id, in this attempt or an earlier one."""
    accepted = ledger.accepted(endpoint.counts_for_resume)
    if endpoint.spec.one_subject:
        done = len({endpoint.resume_keys_covered(r)[0] for r in accepted})
    else:
        done = sum({r["batch"]: r["records"] for r in accepted}.values())
    return max(identifiers - done, 0)
