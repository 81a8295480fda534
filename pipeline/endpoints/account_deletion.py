"""Partnerships API account-level data deletion [contract section 5]: one request per managed account.

Every request carries an Idempotency-Key derived from (job, run id, account, real or dry run): the same key on
every retry and on a resumed run, so a lost answer is retried safely, and never shared between a dry run and
a real one (dry runs burn their keys). Operations whose answer was not final are polled and recorded.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.batching import SUBJECT, WIRE, Batch
from pipeline.config import AccountDeletionDestination
from pipeline.endpoints.base import EndpointBase, EndpointSpec, Fetch, HttpRequest, error_detail, json_body, raise_for_status
from pipeline.errors import SendError, TerminalError
from pipeline.http.auth import bearer
from pipeline.prepare.hashing import sha256_hex
from pipeline.prepare.prepared import RowPlan

if TYPE_CHECKING:
    import requests

OPERATION_HEADER = "X-Operation-Id"
REQUEST_HEADER = "X-Partnership-Account-Data-Deletion-Request-Id"
FINAL_OPERATION_STATES = frozenset({"succeeded", "success", "completed", "failed", "error", "cancelled"})
_KEY_NAMESPACE = uuid.UUID("6f1f5d0e-8b8e-4f55-9f0c-2b0b7a3c9a41")
_HINTS = {
    400: "the API rejected the request",
    401: "check the partner API token in destination.credentials.token",
    409: "the Idempotency-Key was already used for a different request (a dry run burns its key)",
}


class AccountDeletion(EndpointBase):
    def __init__(self, destination: AccountDeletionDestination, columns: dict[str, str]):
        self.destination = destination
        self.spec = EndpointSpec(
            family="account_deletion",
            retry_safe=True,  # the Idempotency-Key makes a retry safe
            wire_encoding="email",
            identifier_role="account_id",
            limits=destination.effective_limits,
            one_subject=True,
            needs_whole_set=True,
            status_hints=_HINTS,
        )
        self._base = destination.url
        self._run_scope = ""
        self.poll_interval = 0.5

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
            **bearer(self.destination.credentials.token),
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
        raise_for_status(response, self.spec)

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        self.check_status(response)
        body = json_body(response)
        ids: dict[str, Any] = {}
        if isinstance(body, dict):
            if isinstance(body.get("request_id"), str):
                ids["request_id"] = body["request_id"]
            data = body.get("data")
            if isinstance(data, dict):
                for key in ("requestId", "downstreamRequestId"):
                    if isinstance(data.get(key), str):
                        ids[key] = data[key]
        for header, key in ((OPERATION_HEADER, "operationId"), (REQUEST_HEADER, REQUEST_HEADER)):
            if response.headers.get(header):
                ids[key] = response.headers[header]
        return ids

    def after_accept(self, batch: Batch, ids: dict[str, Any], fetch: Fetch) -> tuple[dict[str, Any], dict[str, Any]]:
        operation_id = ids.get("operationId")
        if not operation_id:
            return ids, {"operation_status": "none (dry run)" if self.destination.dry_run else "no operation id"}
        deadline = time.monotonic() + self.destination.operation_poll_seconds
        status = "unknown"
        while True:
            try:
                status = operation_status(json_body(fetch(self.operation_request(operation_id))))
            except SendError as exc:
                return ids, {"operation_status": "unknown", "operation_note": str(exc)}
            if status.lower() in FINAL_OPERATION_STATES or time.monotonic() >= deadline:
                return ids, {"operation_status": status}
            time.sleep(self.poll_interval)

    def operation_request(self, operation_id: str) -> HttpRequest:
        headers = {**bearer(self.destination.credentials.token), "X-Platform-Parent-Account-Id": self.destination.parent_account_id,
                   "Accept": "application/json"}
        return HttpRequest("GET", f"{self._base}/v1/partnership/operations/{operation_id}", headers)

    def counts_for_resume(self, record: dict[str, Any]) -> bool:
        # A dry run's acceptance deletes nothing: it never stands in for the real request.
        return super().counts_for_resume(record) and bool(record.get("dry_run_request", False)) == self.destination.dry_run

    def manifest_fields(self, batch: Batch) -> dict[str, Any]:
        (account_id,) = batch.identifiers
        return {"account_id": account_id, "idempotency_key": self.idempotency_key(account_id), "dry_run_request": self.destination.dry_run}


def operation_status(body: Any) -> str:
    """The operations resource is not documented: read `data.status`, else `status` when it is a word."""
    if isinstance(body, dict):
        data = body.get("data")
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            return data["status"]
        if isinstance(body.get("status"), str):
            return body["status"]
    return "unknown"
