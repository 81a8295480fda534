"""The manifest lines a run appends: what each request was and what became of it. Never a raw identifier: a batch
is named by its digest, a one-subject request by the hex SHA-256 of its identifier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.batching import Batch
from pipeline.endpoints.base import Endpoint
from pipeline.ledger import SENDING, UNRECORDED_ATTEMPTS, utc_now

if TYPE_CHECKING:
    from pipeline.http.client import Delivery


class ManifestLines:
    def __init__(self, run_id: str, job: str, endpoint: Endpoint):
        self.run_id, self.job, self.endpoint = run_id, job, endpoint

    def _about(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job": self.job, "endpoint": self.endpoint.spec.family, "target": self.endpoint.target}

    def request(self, batch: Batch) -> dict[str, Any]:
        """Which request: its batch, size and digest (and subject), with the endpoint's own audit fields."""
        line = {**self._about(), "batch": batch.index, "records": batch.records, "digest": batch.digest}
        if batch.subject is not None:
            line["subject"] = batch.subject
        return line | self.endpoint.manifest_fields(batch)

    def sending(self, batch: Batch, started_at: str) -> dict[str, Any]:
        """Written right before a request that is not idempotent goes out: a resume then knows it may have arrived."""
        return {**self.request(batch), "record": SENDING, "started_at": started_at}

    def outcome(self, batch: Batch, delivery: Delivery) -> dict[str, Any]:
        finished_at = utc_now()
        return {
            **self.request(batch), "status": delivery.status, "http_status": delivery.http_status, "ids": delivery.ids,
            "attempts": delivery.attempts, "error": delivery.error, "ambiguous": delivery.ambiguous, **delivery.notes,
            "started_at": delivery.started_at or finished_at, "finished_at": finished_at,
        }

    def dry_run(self, batch: Batch) -> dict[str, Any]:
        now = utc_now()
        return {**self.request(batch), "status": "dry_run", "http_status": None, "ids": {}, "attempts": 0, "error": None,
                "ambiguous": False, "started_at": now, "finished_at": now}

    def unrecorded_attempts(self, requests: int, since: str, ids: dict[str, Any], note: str | None) -> dict[str, Any]:
        """What the API may hold for requests an earlier attempt sent without recording their answers."""
        return {**self._about(), "record": UNRECORDED_ATTEMPTS, "requests": requests, "since": since, "ids": ids,
                "ids_note": note, "checked_at": utc_now()}
