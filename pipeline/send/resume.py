"""What an earlier attempt under the same run id already did, as its ledger records it, and what that means now.

A batch (or, for one-subject endpoints, a subject) accepted for this destination is not sent again. A request
whose sending is on record but whose answer is not (the process died in between) may have been acted on: sent
again, it is flagged ambiguous.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from pipeline.batching import Batch
from pipeline.endpoints.base import Endpoint
from pipeline.ledger import SENDING, LedgerBase
from pipeline.words import plural

log = logging.getLogger(__name__)

# An Idempotency-Key is relied on only this long before the API is said to forget it (Rokt: about 24 h).
KEY_SAFETY_HOURS = 4.0


class Resume:
    def __init__(self, ledger: LedgerBase, endpoint: Endpoint, *, tracks_sending: bool):
        """`tracks_sending`: the run records each request before it is sent (not idempotent, or only while the API
        keeps its Idempotency-Key)."""
        self.endpoint = endpoint
        one_subject = endpoint.spec.one_subject
        self._accepted_batches = {} if one_subject else ledger.accepted_batches(endpoint.counts_for_resume)
        self._accepted_subjects = (ledger.accepted_subjects(endpoint.resume_keys_covered, endpoint.counts_for_resume)
                                   if one_subject else set())
        self.skipped = len(ledger.accepted(endpoint.counts_for_resume)) if one_subject else len(self._accepted_batches)
        self.unrecorded = unrecorded_attempts(ledger.records, endpoint) if tracks_sending else {}
        elsewhere = sum(1 for r in ledger.accepted() if not endpoint.same_target(r))
        if elsewhere:
            log.warning("%s accepted under this run id went to another destination (the job's endpoint, URL, "
                        "account, list, action or mode has changed since): they do not count here, so their identifiers "
                        "are sent to this one", plural(elsewhere, "request", "requests"))

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

    def earlier_attempt(self, batch: Batch) -> tuple[bool, dict[str, Any]] | None:
        """(ambiguous, manifest notes) for a request an earlier attempt sent without recording its answer; None when
        none did. Ambiguous unless the request carries an Idempotency-Key the API still keeps (it replays the first
        answer); a key older than that no longer protects it, which the notes say."""
        sent_at = self.unrecorded.get(_request_key(self.endpoint, batch))
        if sent_at is None:
            return None
        notes: dict[str, Any] = {"earlier_attempt_unrecorded": sent_at}
        key_hours = self.endpoint.spec.idempotency_key_hours
        if key_hours is None:  # not idempotent: the API may have acted on both
            return True, notes
        age_hours = (datetime.now(timezone.utc) - datetime.fromisoformat(sent_at.replace("Z", "+00:00"))).total_seconds() / 3600
        if age_hours < key_hours - KEY_SAFETY_HOURS:
            return False, notes
        return True, notes | {"idempotency_key_note": f"first sent {age_hours:.1f} h earlier; the API keeps an Idempotency-Key "
                                                      f"about {key_hours:g} h, so it may have acted on this request twice"}


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


def seconds_since_recent_starts(records: list[dict[str, Any]], endpoint: Endpoint, within: float = 3600.0) -> list[float]:
    """How long ago the requests of this target recorded in the ledger were made, for those within `within` seconds:
    an attempt resumed (or a deletion sync run) moments after the last one stopped still counts them against the
    rate limit. Each line counts its start and its finish: follow-up reads (a task id looked up) come in between."""
    now = datetime.now(timezone.utc)
    # A request's sending line and its outcome line carry the same start: counted once.
    moments = {(r["batch"], key, r[key]) for r in records if "batch" in r and endpoint.same_target(r)
               for key in ("started_at", "finished_at") if isinstance(r.get(key), str)}
    ages = [(now - datetime.fromisoformat(moment.replace("Z", "+00:00"))).total_seconds() for _, _, moment in moments]
    return [age for age in ages if 0 <= age < within]


def identifiers_left(ledger: LedgerBase, endpoint: Endpoint, identifiers: int) -> int:
    """Valid identifiers not accepted under this run id, in this attempt or an earlier one."""
    accepted = ledger.accepted(endpoint.counts_for_resume)
    if endpoint.spec.one_subject:
        done = len({endpoint.resume_keys_covered(r)[0] for r in accepted})
    else:
        done = sum({r["batch"]: r["records"] for r in accepted}.values())
    return max(identifiers - done, 0)
