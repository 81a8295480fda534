"""Partnerships API: network privacy requests and account-level data deletion [contract sections 4, 5].

Account deletions keep their Idempotency-Keys: the same key and request replays the first answer and
deletes nothing more; a key reused for another request (a dry run's key for the real one) is refused with
409. An operation answers `running` to its first `operation_running_polls` polls, then `succeeded`.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

from pipeline.sandbox.routes import Call, Reply, Route, guarded, route
from pipeline.sandbox.state import FamilyLimits, SandboxState

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_BASE64_SHA256 = re.compile(r"^[A-Za-z0-9+/]{43}=$")
_RULES = {
    "NETWORK_OPT_OUT": ({"email", "phone"}, {"sha256Email"}),
    "NETWORK_DATA_DELETION": ({"email", "sha256Email"}, {"phone"}),
}


class PartnershipStore:
    def __init__(self, state: SandboxState):
        self.state = state
        self.lock = threading.Lock()
        self.keys: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> {fingerprint, reply}
        self.deletions: list[dict[str, Any]] = []
        self.operations: dict[str, dict[str, Any]] = {}
        self.unowned_accounts: set[str] = set()
        self.unknown_accounts: set[str] = set()
        self.operation_running_polls = 0
        self.idempotency_headers_seen = 0  # on network privacy requests, where there must be none

    def configure(self, options: dict[str, Any]) -> None:
        with self.lock:
            self.unowned_accounts = set(map(str, options.get("unowned_accounts", self.unowned_accounts)))
            self.unknown_accounts = set(map(str, options.get("unknown_accounts", self.unknown_accounts)))
            self.operation_running_polls = int(options.get("operation_running_polls", self.operation_running_polls))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"deletions": list(self.deletions), "operations": list(self.operations.values()),
                    "idempotency_keys": len(self.keys), "idempotency_headers_on_network_privacy": self.idempotency_headers_seen}


def _store(call: Call) -> PartnershipStore:
    return call.state.extensions["partnerships"]


def _envelope(status: int, error: str | None, message: str, data: Any = None) -> dict[str, Any]:
    return {"status": status, "error": error, "message": message, "request_id": str(uuid.uuid4()), "data": data}


def _refused(call: Call) -> Reply | None:
    if call.header("Authorization") != f"Bearer {call.state.credentials.partner_token}":
        return Reply(401, _envelope(401, "UNAUTHORIZED", "invalid or missing bearer token"))
    return None


@guarded(_refused)
def network_privacy(call: Call) -> Reply:
    store = _store(call)
    if call.header("Idempotency-Key"):
        with store.lock:
            store.idempotency_headers_seen += 1
    if not call.query.get("parent_account_id"):
        return Reply(400, _envelope(400, "BAD_REQUEST", "parent_account_id is required"))
    try:
        body = json.loads(call.body)
    except ValueError:
        return Reply(400, _envelope(400, "BAD_REQUEST", "body is not JSON"))
    if not isinstance(body, dict) or body.get("requestType") not in _RULES:
        return Reply(400, _envelope(400, "BAD_REQUEST", "requestType must be NETWORK_OPT_OUT or NETWORK_DATA_DELETION"))
    accepted, rejected = _RULES[body["requestType"]]
    given = set(body) - {"requestType"}
    if given & rejected or len(given) != 1 or not given <= accepted:
        return Reply(400, _envelope(400, "BAD_REQUEST", f"{body['requestType']} takes exactly one of {sorted(accepted)}"))
    (kind,) = given
    value = body[kind]
    valid = isinstance(value, str) and (
        (kind == "email" and "@" in value and value == value.strip().lower())
        or (kind == "phone" and _E164.match(value))
        or (kind == "sha256Email" and _BASE64_SHA256.match(value))
    )
    if not valid:
        return Reply(400, _envelope(400, "BAD_REQUEST", f"{kind} has the wrong format"))
    request_id = str(uuid.uuid4())
    call.state.record_received({"family": "network_privacy", "request_type": body["requestType"], "key": kind,
                                "count": 1, "identifiers": [value], "id": request_id,
                                "parent_account_id": call.query["parent_account_id"]})
    return Reply(202, {"requestId": request_id, "status": "submitted"}, {"X-Network-Privacy-Request-Id": request_id}, acted=True)


@guarded(_refused)
def account_deletion(call: Call) -> Reply:
    store = _store(call)
    account, parent = call.params["account_id"], call.header("X-Platform-Parent-Account-Id")
    key, dry_run = call.header("Idempotency-Key"), call.query.get("dry_run") == "true"
    if not parent:
        return Reply(400, _envelope(400, "BAD_REQUEST", "X-Platform-Parent-Account-Id is required"))
    if not key:
        return Reply(400, _envelope(400, "BAD_REQUEST", "Idempotency-Key is required"))
    if call.body:
        return Reply(400, _envelope(400, "BAD_REQUEST", "the body must be empty: the account is the path"))
    fingerprint = (account, parent, dry_run)
    with store.lock:
        seen = store.keys.get(key)
        if seen is not None:
            if seen["fingerprint"] != fingerprint:
                return Reply(409, _envelope(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for another request"))
            replay = seen["reply"]
            return Reply(replay.status, replay.body, dict(replay.headers))
        if account in store.unknown_accounts:
            return Reply(404, _envelope(404, "NOT_FOUND", "account not found"))
        if account in store.unowned_accounts:
            return Reply(403, _envelope(403, "FORBIDDEN", "the parent account does not own this account"))
        request_id = str(uuid.uuid4())
        data: dict[str, Any] = {"requestId": request_id, "accountId": account, "status": "submitted",
                                "message": "Partnership account data deletion request submitted to the Data Deletion API."}
        headers = {"X-Partnership-Account-Data-Deletion-Request-Id": request_id}
        if dry_run:
            data.update(dry_run=True, message="Dry run: validated, nothing submitted.")
        else:
            operation_id = str(uuid.uuid4())
            data["downstreamRequestId"] = f"delete-account-{len(store.deletions) + 1}"
            headers["X-Operation-Id"] = operation_id
            store.operations[operation_id] = {"operationId": operation_id, "accountId": account, "created_at": call.state.now(), "polls": 0}
            store.deletions.append({"accountId": account, "parent": parent, "requestId": request_id, "operationId": operation_id, "key": key})
        reply = Reply(202, _envelope(202, None, "accepted", data), headers, acted=not dry_run)
        store.keys[key] = {"fingerprint": fingerprint, "reply": Reply(reply.status, reply.body, dict(headers))}
    return reply


@guarded(_refused)
def operation(call: Call) -> Reply:
    store = _store(call)
    with store.lock:
        found = store.operations.get(call.params["operation_id"])
        if found is None:
            return Reply(404, _envelope(404, "NOT_FOUND", "operation not found"))
        found["polls"] += 1
        done = found["polls"] > store.operation_running_polls
        data = {"operationId": found["operationId"], "type": "ACCOUNT_DATA_DELETION", "accountId": found["accountId"],
                "status": "succeeded" if done else "running"}
    return Reply(200, _envelope(200, None, "ok", data))


ROUTES: list[Route] = [
    route("POST", "/v1/partnership/network-privacy-requests", "network_privacy", network_privacy),
    route("POST", "/v1/partnership/accounts/(?P<account_id>[^/]+)/data-deletion-requests", "account_deletion", account_deletion),
    route("GET", "/v1/partnership/operations/(?P<operation_id>[^/]+)", "account_deletion", operation),
]
# Not documented: the sandbox enforces the connector's conservative defaults.
FAMILY_LIMITS = {
    "network_privacy": FamilyLimits(requests_per_second=10, concurrency=4),
    "account_deletion": FamilyLimits(requests_per_second=2, concurrency=2),
}
EXTENSIONS = {"partnerships": PartnershipStore}
