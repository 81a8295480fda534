"""Partnerships API account-level data deletion [contract section 5]: one request per managed account.

Every request carries an Idempotency-Key derived from (job, run id, account, real or dry run): the same key on
every retry and on a resumed run, so a lost answer is retried safely, and never shared between a dry run and
a real one (dry runs burn their keys). The API keeps a key about 24 hours: a request sent without its answer
being recorded is written down first, so a resume a day later knows the key no longer protects it.

Every answer names its operation (X-Operation-Id, errors included). An error after which the API may have acted
(a 5xx) is recovered from that operation when it has finished: `completed` holds the original answer in
`data.response_body`, `failed` the last error in `data.error`. Accepted requests' operations are polled too, so
the manifest says how each ended. Polls count against their own published limit (600 a minute).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.batching import SUBJECT, WIRE, Batch
from pipeline.config import AccountDeletionDestination, Limits
from pipeline.endpoints.base import (
    ERROR_CODE, EndpointBase, EndpointSpec, Fetch, HttpRequest, Recovered, error_detail, json_body,
)
from pipeline.endpoints.partnerships import PartnershipsAuth
from pipeline.errors import SendError, TerminalError
from pipeline.prepare.hashing import sha256_hex
from pipeline.prepare.prepared import RowPlan

if TYPE_CHECKING:
    import requests

OPERATION_HEADER = "X-Operation-Id"
REQUEST_HEADER = "X-Partnership-Account-Data-Deletion-Request-Id"
COMPLETED, FAILED = "completed", "failed"  # the published operation states are pending | in_progress | completed | failed
OPERATIONS_RATE = "operations"
_OPERATION_LIMITS = Limits(batch_size=1, requests_per_minute=600, concurrency=4)  # published: 600 polls a minute
_KEY_NAMESPACE = uuid.UUID("6f1f5d0e-8b8e-4f55-9f0c-2b0b7a3c9a41")
_HINTS = {
    400: "the API rejected the request",
    401: "check destination.credentials (client_id and client_secret, or token)",
    409: "the Idempotency-Key was already used for a different request (a dry run burns its key)",
}


class AccountDeletion(EndpointBase):
    one_subject = True

    def __init__(self, destination: AccountDeletionDestination, columns: dict[str, str]):
        self.destination = destination
        self.spec = EndpointSpec(
            family="account_deletion",
            retry_safe=True,  # the Idempotency-Key makes a retry safe
            wire_encoding="email",
            identifier_role="account_id",
            limits=destination.effective_limits,
            one_subject=self.one_subject,
            needs_whole_set=True,
            status_hints=_HINTS,
            rates={OPERATIONS_RATE: _OPERATION_LIMITS},
            idempotency_key_hours=24.0,
        )
        self._base = destination.url
        self._auth = PartnershipsAuth(destination)
        self._run_scope = ""
        self.poll_interval = 0.5

    def auth_headers(self) -> dict[str, str]:
        return self._auth.headers()

    def refresh_credentials(self) -> bool:
        return self._auth.refresh()

    def row_plan(self, columns: dict[str, str]) -> RowPlan:
        account = pl.col("account_id")
        return RowPlan(roles=["account_id"], outputs=[account.alias(WIRE), sha256_hex(account).alias(SUBJECT), account.alias("account_id")])

    def bind_run(self, job: str, run_id: str, dry_run: bool) -> None:
        self._run_scope = f"{job}/{run_id}"

    def idempotency_key(self, account_id: str) -> str:
        mode = "dry-run" if self.destination.dry_run else "real"
        return str(uuid.uuid5(_KEY_NAMESPACE, f"{self._run_scope}/{account_id}/{mode}"))

    def confirmation_needed(self, requests: int) -> str | None:
        limit = self.destination.max_accounts
        if not self.destination.dry_run and requests > limit:
            return (f"this would delete the data of {requests} accounts, more than destination.max_accounts={limit}; "
                    "check the list (try destination.dry_run: true first) and rerun with --yes")
        return None

    def build_request(self, batch: Batch) -> HttpRequest:
        (account_id,) = batch.identifiers
        headers = {
            "X-Platform-Parent-Account-Id": self.destination.parent_account_id,
            "Idempotency-Key": self.idempotency_key(account_id),
            "Accept": "application/json",
        }
        params = {"dry_run": "true"} if self.destination.dry_run else None
        return HttpRequest("POST", f"{self._base}/v1/partnership/accounts/{account_id}/data-deletion-requests", headers, params=params)

    def check_status(self, response: requests.Response) -> None:
        if response.status_code in (403, 404):
            # An account the parent does not own is this account's problem, not the run's.
            raise TerminalError(
                f"HTTP {response.status_code} ({error_detail(response) or 'refused'}): the parent account "
                f"{self.destination.parent_account_id} does not own this account, or it does not exist",
                http_status=response.status_code,
            )
        self._auth.raise_for_status(response, self.spec)

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        self.check_status(response)
        return _answer_ids(json_body(response), response.headers)

    def after_accept(self, batch: Batch, ids: dict[str, Any], fetch: Fetch) -> tuple[dict[str, Any], dict[str, Any]]:
        operation_id = ids.get("operationId")
        if not operation_id:
            return ids, {"operation_status": "none (dry run)" if self.destination.dry_run else "no operation id"}
        try:
            operation = self._await_operation(operation_id, fetch)
        except SendError as exc:
            return ids, {"operation_status": "unknown", "operation_note": str(exc)}
        return ids, {"operation_status": operation.get("status", "unknown")} | _operation_error(operation)

    def recover(self, response: requests.Response, fetch: Fetch) -> Recovered | None:
        operation_id = response.headers.get(OPERATION_HEADER)
        if not operation_id:
            return None
        try:
            operation = self._await_operation(operation_id, fetch)
        except SendError:
            return None  # the operation cannot be read now: retry with the same key, as without one
        if operation.get("status") == FAILED:
            code = _operation_error(operation).get("operation_error", "no error code")
            raise TerminalError(f"HTTP {response.status_code}; operation {operation_id} failed ({code})",
                                http_status=response.status_code)
        answer = operation.get("response_body")
        if operation.get("status") != COMPLETED or not isinstance(answer, dict):
            return None  # still running: the retry's answer (the key replays it) will say
        ids = {**_answer_ids(answer, {}), "operationId": operation_id}
        status = answer.get("status") if isinstance(answer.get("status"), int) else None
        return Recovered(ids, status, {"operation_status": COMPLETED, "recovered_from_operation": operation_id,
                                       "http_status_seen": response.status_code})

    def _await_operation(self, operation_id: str, fetch: Fetch) -> dict[str, Any]:
        """The operation's `data`, polled until it is completed or failed, or operation_poll_seconds have passed."""
        deadline = time.monotonic() + self.destination.operation_poll_seconds
        while True:
            operation = operation_data(json_body(fetch(self.operation_request(operation_id))))
            if operation.get("status") in (COMPLETED, FAILED) or time.monotonic() >= deadline:
                return operation
            time.sleep(self.poll_interval)

    def operation_request(self, operation_id: str) -> HttpRequest:
        headers = {"X-Platform-Parent-Account-Id": self.destination.parent_account_id, "Accept": "application/json"}
        return HttpRequest("GET", f"{self._base}/v1/partnership/operations/{operation_id}", headers, rate=OPERATIONS_RATE)

    def counts_for_resume(self, record: dict[str, Any]) -> bool:
        # A dry run's acceptance deletes nothing: it never stands in for the real request.
        return super().counts_for_resume(record) and bool(record.get("dry_run_request", False)) == self.destination.dry_run

    def manifest_fields(self, batch: Batch) -> dict[str, Any]:
        (account_id,) = batch.identifiers
        return {"account_id": account_id, "idempotency_key": self.idempotency_key(account_id), "dry_run_request": self.destination.dry_run}


def operation_data(body: Any) -> dict[str, Any]:
    """The operation resource's `data` (status, response_body, error), or {} when the answer has none."""
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _answer_ids(body: Any, headers: Any) -> dict[str, Any]:
    """The IDs of a write's answer: the envelope's request id, data.requestId and downstreamRequestId, and the
    operation and request id headers."""
    ids: dict[str, Any] = {}
    if isinstance(body, dict):
        if isinstance(body.get("request_id"), str):
            ids["request_id"] = body["request_id"]
        data = body.get("data")
        if isinstance(data, dict):
            ids |= {key: data[key] for key in ("requestId", "downstreamRequestId") if isinstance(data.get(key), str)}
    for header, key in ((OPERATION_HEADER, "operationId"), (REQUEST_HEADER, REQUEST_HEADER)):
        if headers.get(header):
            ids[key] = headers[header]
    return ids


def _operation_error(operation: dict[str, Any]) -> dict[str, str]:
    """A failed operation's error code (`data.error`), never its free text: it may echo the request."""
    error = operation.get("error")
    code = (error.get("error") or error.get("code")) if isinstance(error, dict) else error
    return {"operation_error": code} if isinstance(code, str) and ERROR_CODE.match(code) else {}
