"""Data Deletion API [contract section 2]: one deletion task per batch of emails (base64 SHA-256 or raw).

Creating a task is not idempotent: a lost answer is retried after backoff and flagged ambiguous. The 202 is
documented without a body, so the task ID is taken from the body when present, otherwise found by listing
the account's tasks (one request in flight at a time keeps the new task unambiguous).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pipeline.batching import Batch
from pipeline.config import DataDeletionDestination
from pipeline.endpoints.base import EndpointBase, EndpointSpec, Fetch, HttpRequest, error_detail, json_body, raise_for_status
from pipeline.errors import CredentialsExpired, SendError, TerminalError
from pipeline.http.auth import OAuthClientCredentials
from pipeline.ledger import UNRECORDED_ATTEMPTS

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

TOKEN_PATH = "/auth/oauth2/token"
CREATE_PATH = "/data/deletion-requests/emails"
LIST_PATH = "/data/deletion-requests"

_HINTS = {
    400: "the API rejected the request's format",
    404: "not found",
    410: "the task is past PENDING and READY and can no longer be cancelled",
}
_ERROR_HELP = {
    "UNAUTHORIZED_ACCOUNT": "this account is not allow-listed for data deletion; ask your Rokt account manager to enable it",
    "AUTHENTICATION_ERROR": "the app credentials were refused; check destination.credentials app_id and app_secret",
}


class DataDeletion(EndpointBase):
    def __init__(self, destination: DataDeletionDestination, identifier_role: str):
        self.destination = destination
        self.spec = EndpointSpec(
            family="data_deletion",
            retry_safe=False,
            wire_encoding="email" if destination.send == "email" else "base64",
            identifier_role=identifier_role,
            limits=destination.effective_limits,
            status_hints=_HINTS,
        )
        base = destination.url
        self.tasks_url = base + LIST_PATH
        self._create_url = base + CREATE_PATH
        self.oauth = OAuthClientCredentials(
            base + TOKEN_PATH, destination.credentials.app_id, destination.credentials.app_secret,
            timeout=destination.timeout_seconds,
        )
        self._list_key = "rawEmails" if destination.send == "email" else "sha256Emails"
        self._known_tasks: set[str] | None = set()  # listed before the run; None when that listing failed
        self._seen_tasks: set[str] = set()  # created by this run
        self._run_started = datetime.now(timezone.utc)
        self._known_lock = threading.Lock()

    def auth_headers(self) -> dict[str, str]:
        return self.oauth.headers()

    def refresh_credentials(self) -> bool:
        self.oauth.invalidate()
        return True

    def on_run_start(self, fetch: Fetch) -> None:
        self._run_started = datetime.now(timezone.utc) - timedelta(seconds=5)
        try:
            listed = {task["taskId"] for task in self.list_tasks(fetch)}
        except SendError as exc:
            # Only needed to identify tasks when a 202 has no body; fall back to "created since the run began".
            log.warning("could not list existing deletion tasks before sending (%s); new tasks will be matched by creation time", exc)
            listed = None
        with self._known_lock:
            self._known_tasks = listed

    def build_request(self, batch: Batch) -> HttpRequest:
        body = {"accountId": self.destination.account_id, self._list_key: batch.json_identifiers}
        return HttpRequest("POST", self._create_url, {"Content-Type": "application/json", "Accept": "application/json"}, json=body)

    def check_status(self, response: requests.Response) -> None:
        raise_for_deletion_status(response, self.spec)

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        self.check_status(response)
        body = json_body(response)
        task_id = _task_id(body)
        return {"taskId": task_id} if task_id else {}

    def after_accept(self, batch: Batch, ids: dict[str, Any], fetch: Fetch) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._known_lock:
            if "taskId" in ids:
                self._seen_tasks.add(ids["taskId"])
                return ids, {"task_id_source": "response"}
            tasks = self.list_tasks(fetch)
            if self._known_tasks is None:
                started = self._run_started
                new = [t["taskId"] for t in tasks if t["taskId"] not in self._seen_tasks and _created(t) is not None and _created(t) >= started]
            else:
                new = [t["taskId"] for t in tasks if t["taskId"] not in self._known_tasks and t["taskId"] not in self._seen_tasks]
            self._seen_tasks.update(new)
        if len(new) == 1:
            return {"taskId": new[0]}, {"task_id_source": "list_diff"}
        if not new:
            return {}, {"task_id_source": "not_found", "task_id_note": "no new task appeared in the task list"}
        return {"taskId_candidates": sorted(new)}, {"task_id_source": "list_diff_ambiguous"}

    def ids_of_unrecorded_attempts(self, since: str, records: list[dict[str, Any]], fetch: Fetch) -> dict[str, Any]:
        # A task the API created for a request whose answer died with the process is in the list, created
        # since then, and named by no manifest line (nor are tasks of other clients of the account: candidates).
        since_time = datetime.fromisoformat(since.replace("Z", "+00:00")) - timedelta(seconds=5)
        named = set(created_task_ids(records))
        candidates = sorted(str(task["taskId"]) for task in self.list_tasks(fetch) if str(task["taskId"]) not in named
                            and (_created(task) or since_time) >= since_time)
        return {"taskId_candidates": candidates} if candidates else {}

    def list_tasks(self, fetch: Fetch) -> list[dict[str, Any]]:
        """This account's tasks, as the API lists them."""
        body = json_body(fetch(HttpRequest("GET", self.tasks_url, {"Accept": "application/json"})))
        tasks = body if isinstance(body, list) else (body or {}).get("data", []) if isinstance(body, dict) else []
        return [t for t in tasks if isinstance(t, dict) and "taskId" in t and str(t.get("accountId")) == self.destination.account_id]

    def cancel_request(self, task_id: str) -> HttpRequest:
        return HttpRequest("DELETE", f"{self.tasks_url}/{task_id}", {"Accept": "application/json"})


def raise_for_deletion_status(response: requests.Response, spec: EndpointSpec) -> None:
    """The Data Deletion error table: the body's error name decides, not only the status."""
    if response.ok:
        return
    name = error_detail(response)
    if name == "AUTHENTICATION_ERROR":
        raise CredentialsExpired(f"HTTP {response.status_code} AUTHENTICATION_ERROR", http_status=response.status_code)
    if name in _ERROR_HELP:
        raise TerminalError(f"HTTP {response.status_code} {name}: {_ERROR_HELP[name]}", http_status=response.status_code, stops_run=True)
    raise_for_status(response, spec)


def created_task_ids(records: list[dict[str, Any]]) -> list[str]:
    """The tasks a run's accepted requests created: each one's taskId, or when the task list could not tell
    which new task was whose (a request retried after a lost answer creates two), every candidate; and the
    candidates for requests sent before a crash whose answers were never recorded."""
    task_ids: list[str] = []
    for record in records:
        if record.get("status") == "accepted" or record.get("record") == UNRECORDED_ATTEMPTS:
            ids = record.get("ids", {})
            task_ids += [str(ids["taskId"])] if "taskId" in ids else [str(t) for t in ids.get("taskId_candidates", [])]
    return task_ids


def _created(task: dict[str, Any]) -> datetime | None:
    value = task.get("creationTime")
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _task_id(body: Any) -> str | None:
    if isinstance(body, dict):
        for candidate in (body, body.get("data")):
            if isinstance(candidate, dict) and isinstance(candidate.get("taskId"), str):
                return candidate["taskId"]
    return None
