"""Data Deletion API with its OAuth token endpoint and task lifecycle [contract section 2].

Lifecycle on the sandbox clock: PENDING for 12 days, READY for 3 more, then PROCESSING (handed to internal
systems; the documents do not name this state) until ACTIONED at day 30, the documented maximum.
Cancelling works in PENDING and READY only (410 DEADLINE_EXCEEDED after). The 202 of a create has no body,
as documented, unless `create_returns_body` is configured.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from pipeline.sandbox.routes import Call, Reply, Route, guarded, route
from pipeline.sandbox.state import FamilyLimits, SandboxState

DAY = 86_400.0
READY_AFTER, PROCESSING_AFTER, ACTIONED_AFTER = 12 * DAY, 15 * DAY, 30 * DAY
_BASE64_SHA256 = re.compile(r"^[A-Za-z0-9+/]{43}=$")
LIMITS = FamilyLimits(requests_per_second=1, concurrency=1)


class DeletionStore:
    def __init__(self, state: SandboxState):
        self.state = state
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry on the sandbox clock
        self.token_requests = 0
        self.tasks: list[dict[str, Any]] = []
        self.create_returns_body = False
        self.allowed_accounts: set[str] | None = None  # None: every account is allow-listed
        self.token_lifetime = 3600.0

    def configure(self, options: dict[str, Any]) -> None:
        with self.lock:
            self.create_returns_body = bool(options.get("create_returns_body", self.create_returns_body))
            if "allowed_accounts" in options:
                accounts = options["allowed_accounts"]
                self.allowed_accounts = None if accounts is None else {str(a) for a in accounts}
            self.token_lifetime = float(options.get("token_lifetime", self.token_lifetime))
            if options.get("expire_tokens"):
                self.tokens.clear()

    def status(self, task: dict[str, Any]) -> str:
        if task["cancelled_at"] is not None:
            return "CANCELLED"
        age = self.state.now() - task["created_at"]
        if age < READY_AFTER:
            return "PENDING"
        if age < PROCESSING_AFTER:
            return "READY"
        return "ACTIONED" if age >= ACTIONED_AFTER else "PROCESSING"

    def public(self, task: dict[str, Any]) -> dict[str, Any]:
        status = self.status(task)
        created = task["created_at"]
        return {
            "taskId": task["taskId"],
            "status": status.lower(),  # the documented example is lowercase
            "deletionType": "emailsDeletion",
            "creationTime": _iso(created),
            "accountId": task["accountId"],
            "readyTime": _iso(created + READY_AFTER) if status in ("READY", "PROCESSING", "ACTIONED") else None,
            "actionedTime": _iso(created + ACTIONED_AFTER) if status == "ACTIONED" else None,
            "cancelledTime": _iso(task["cancelled_at"]) if task["cancelled_at"] is not None else None,
        }

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"token_requests": self.token_requests, "tasks": [
                {**self.public(t), "rawEmails": t["rawEmails"], "sha256Emails": t["sha256Emails"]} for t in self.tasks
            ]}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _error(status: int, name: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": status, "error": name, "message": message}})


def _store(call: Call) -> DeletionStore:
    return call.state.extensions["data_deletion"]


def _authenticated(call: Call) -> Reply | None:
    store = _store(call)
    header = call.header("Authorization") or ""
    expiry = store.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
    if expiry is None or expiry <= call.state.now():
        return _error(403, "AUTHENTICATION_ERROR", "Unable to authenticate the request")
    return None


def token(call: Call) -> Reply:
    store = _store(call)
    credentials = call.state.credentials
    expected = base64.b64encode(f"{credentials.app_id}:{credentials.app_secret}".encode()).decode()
    form = parse_qs(call.body.decode(errors="replace"))
    if call.header("Authorization") != f"Basic {expected}":
        return Reply(401, {"error": "invalid_client"})
    if "application/x-www-form-urlencoded" not in (call.header("Content-Type") or "") or form.get("grant_type") != ["client_credentials"]:
        return Reply(400, {"error": "unsupported_grant_type"})
    with store.lock:
        store.token_requests += 1
        issued = secrets.token_urlsafe(24)
        store.tokens[issued] = call.state.now() + store.token_lifetime
    return Reply(200, {"access_token": issued, "token_type": "Bearer", "expires_in": int(store.token_lifetime)})


@guarded(_authenticated)
def create(call: Call) -> Reply:
    store = _store(call)
    try:
        body = json.loads(call.body)
    except ValueError:
        return _error(400, "BAD_REQUEST", "body is not JSON")
    if not isinstance(body, dict) or set(body) - {"accountId", "rawEmails", "sha256Emails"}:
        return _error(400, "BAD_REQUEST", "unexpected fields")
    account = body.get("accountId")
    if not isinstance(account, str) or not account:
        return _error(400, "BAD_REQUEST", "accountId is required")
    if store.allowed_accounts is not None and account not in store.allowed_accounts:
        return _error(403, "UNAUTHORIZED_ACCOUNT", "The account is not authorised for data deletion requests")
    raw, hashed = body.get("rawEmails", []), body.get("sha256Emails", [])
    if not isinstance(raw, list) or not isinstance(hashed, list) or not (raw or hashed):
        return _error(400, "BAD_REQUEST", "at least one entry in rawEmails or sha256Emails is required")
    if not all(isinstance(h, str) and _BASE64_SHA256.match(h) for h in hashed):
        return _error(400, "BAD_REQUEST", "sha256Emails must be base64-encoded SHA-256 digests")
    if not all(isinstance(e, str) and "@" in e for e in raw):
        return _error(400, "BAD_REQUEST", "rawEmails must be email addresses")
    task = {"taskId": str(uuid.uuid4()), "accountId": account, "created_at": call.state.now(), "cancelled_at": None,
            "rawEmails": raw, "sha256Emails": hashed}
    with store.lock:
        store.tasks.append(task)
    call.state.record_received({"family": "data_deletion", "account_id": account, "task_id": task["taskId"],
                                "key": "sha256Emails" if hashed else "rawEmails", "count": len(raw) + len(hashed),
                                "identifiers": hashed + raw})
    return Reply(202, {"taskId": task["taskId"]} if store.create_returns_body else "", acted=True)


@guarded(_authenticated)
def list_tasks(call: Call) -> Reply:
    store = _store(call)
    with store.lock:
        return Reply(200, [store.public(t) for t in store.tasks])


@guarded(_authenticated)
def cancel(call: Call) -> Reply:
    store = _store(call)
    task_id = call.params["task_id"]
    with store.lock:
        task = next((t for t in store.tasks if t["taskId"] == task_id), None)
        if task is None:
            return _error(404, "NOT_FOUND", f"task not found for with task_id:{task_id}")
        if store.status(task) not in ("PENDING", "READY"):
            return _error(410, "DEADLINE_EXCEEDED", "The deletion request cannot be cancelled as it's past its PENDING and READY states")
        task["cancelled_at"] = call.state.now()
    return Reply(200, {"data": {"message": f"successful cancelled task with taskId: {task_id}"}}, acted=True)


ROUTES: list[Route] = [
    route("POST", "/auth/oauth2/token", "auth", token),
    route("POST", "/data/deletion-requests/emails", "data_deletion", create),
    route("GET", "/data/deletion-requests", "data_deletion", list_tasks),
    route("DELETE", "/data/deletion-requests/(?P<task_id>[^/]+)", "data_deletion", cancel),
]
FAMILY_LIMITS = {"data_deletion": LIMITS}
EXTENSIONS = {"data_deletion": DeletionStore}
