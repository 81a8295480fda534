"""Partnerships API: token exchange, network privacy requests and account-level data deletion [contract sections 4,
5 and "Published by Rokt since the seeds"].

- Access tokens come from `POST /api/v1/oauth/token` (form: grant_type=client_credentials, client_id,
  client_secret) and live `token_lifetime` seconds (300 by default; configurable so tests see many lifetimes).
  A request with an expired token is refused (401) and counted in `expired_token_uses`. The fixed token works too.
- Limits are published per credential: 10 writes a minute for each family, 600 operation polls a minute.
- Every answer is the envelope {status, error, message, request_id, data} with the same id in X-Request-Id,
  errors and the server's own 429s included; only network privacy's 202 has its own body (and the header).
- Account deletions keep their Idempotency-Keys about 24 hours (on the sandbox clock): the same key and request
  replays the first answer; a key reused for another request is refused with 409.
- An operation answers `pending`, then `in_progress` for its first `operation_running_polls` polls, then `completed`
  with the original answer in `data.response_body` (or `failed` with `data.error` for `failing_accounts`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs

from pipeline.sandbox.routes import Call, Reply, Route, guarded, route
from pipeline.sandbox.state import FamilyLimits, SandboxState

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_BASE64_SHA256 = re.compile(r"^[A-Za-z0-9+/]{43}=$")
_RULES = {
    "NETWORK_OPT_OUT": ({"email", "phone"}, {"sha256Email"}),
    "NETWORK_DATA_DELETION": ({"email", "sha256Email"}, {"phone"}),
}
IDEMPOTENCY_KEY_SECONDS = 24 * 3600.0
FIXED_TOKEN_PRINCIPAL = "fixed-token"


class PartnershipStore:
    def __init__(self, state: SandboxState):
        self.state = state
        self.lock = threading.Lock()
        self.keys: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> {fingerprint, reply, expires}
        self.deletions: list[dict[str, Any]] = []
        self.operations: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, expiry on the sandbox clock)
        self.token_requests = 0
        self.expired_token_uses = 0
        self.token_lifetime = 300.0
        self.unowned_accounts: set[str] = set()
        self.unknown_accounts: set[str] = set()
        self.failing_accounts: set[str] = set()
        self.operation_running_polls = 0
        self.idempotency_headers_seen = 0  # on network privacy requests, where there must be none

    def configure(self, options: dict[str, Any]) -> None:
        with self.lock:
            self.unowned_accounts = set(map(str, options.get("unowned_accounts", self.unowned_accounts)))
            self.unknown_accounts = set(map(str, options.get("unknown_accounts", self.unknown_accounts)))
            self.failing_accounts = set(map(str, options.get("failing_accounts", self.failing_accounts)))
            self.operation_running_polls = int(options.get("operation_running_polls", self.operation_running_polls))
            self.token_lifetime = float(options.get("token_lifetime", self.token_lifetime))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"deletions": list(self.deletions), "operations": list(self.operations.values()),
                    "idempotency_keys": len(self.keys), "idempotency_headers_on_network_privacy": self.idempotency_headers_seen,
                    "token_requests": self.token_requests, "expired_token_uses": self.expired_token_uses}

    def principal(self, authorization: str | None) -> tuple[str | None, bool]:
        """(whose credential, expired?) for an Authorization header; (None, False) when it is no credential at all."""
        token = (authorization or "").removeprefix("Bearer ")
        if authorization == f"Bearer {self.state.credentials.partner_token}":
            return FIXED_TOKEN_PRINCIPAL, False
        with self.lock:
            client, expiry = self.tokens.get(token, (None, 0.0))
        return client, client is not None and expiry <= self.state.now()


def _store(call: Call) -> PartnershipStore:
    return call.state.extensions["partnerships"]


def _envelope(status: int, error: str | None, message: str, data: Any = None) -> dict[str, Any]:
    return {"status": status, "error": error, "message": message, "request_id": str(uuid.uuid4()), "data": data}


def enveloped(reply: Reply) -> Reply:
    """Every Partnerships answer in the envelope, with its request id in X-Request-Id too (network privacy's 202
    keeps its own body). Answers the server makes itself (429, injected faults) are wrapped here."""
    body = reply.body
    if not (isinstance(body, dict) and "request_id" in body) and not (reply.status == 202 and isinstance(body, dict)):
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("error") if isinstance(error, dict) else ("TOO_MANY_REQUESTS" if reply.status == 429 else "ERROR")
        message = (error.get("message") if isinstance(error, dict) else None) or str(error or body or "")
        body = _envelope(reply.status, code, message)
    request_id = body.get("request_id") if isinstance(body, dict) and "request_id" in body else str(uuid.uuid4())
    return Reply(reply.status, body, {**reply.headers, "X-Request-Id": request_id}, reply.acted)


def _principal(call: Call) -> str | None:
    return _store(call).principal(call.header("Authorization"))[0]


def _refused(call: Call) -> Reply | None:
    principal, expired = _store(call).principal(call.header("Authorization"))
    if expired:
        with _store(call).lock:
            _store(call).expired_token_uses += 1
        return Reply(401, _envelope(401, "UNAUTHORIZED", "the access token has expired"))
    if principal is None:
        return Reply(401, _envelope(401, "UNAUTHORIZED", "invalid or missing bearer token"))
    return None


def token(call: Call) -> Reply:
    store, credentials = _store(call), call.state.credentials
    form = {key: values[0] for key, values in parse_qs(call.body.decode(errors="replace")).items()}
    if "application/x-www-form-urlencoded" not in (call.header("Content-Type") or "") or form.get("grant_type") != "client_credentials":
        return Reply(400, {"error": "unsupported_grant_type"})
    if (form.get("client_id"), form.get("client_secret")) != (credentials.partner_client_id, credentials.partner_client_secret):
        return Reply(401, {"error": "invalid_client"})
    with store.lock:
        store.token_requests += 1
        issued = secrets.token_urlsafe(24)
        store.tokens[issued] = (credentials.partner_client_id, call.state.now() + store.token_lifetime)
    return Reply(200, {"access_token": issued, "token_type": "Bearer", "expires_in": int(store.token_lifetime)})


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
        if seen is not None and seen["expires"] > call.state.now():
            if seen["fingerprint"] != fingerprint:
                return Reply(409, _envelope(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for another request"))
            replay = seen["reply"]
            return Reply(replay.status, replay.body, dict(replay.headers))
        if account in store.unknown_accounts:
            return Reply(404, _envelope(404, "NOT_FOUND", "account not found"))
        if account in store.unowned_accounts:
            return Reply(403, _envelope(403, "FORBIDDEN", "the parent account does not own this account"))
        reply = _accept_deletion(store, call, account, parent, key, dry_run)
        store.keys[key] = {"fingerprint": fingerprint, "reply": Reply(reply.status, reply.body, dict(reply.headers)),
                           "expires": call.state.now() + IDEMPOTENCY_KEY_SECONDS}
    return reply


def _accept_deletion(store: PartnershipStore, call: Call, account: str, parent: str, key: str, dry_run: bool) -> Reply:
    """The 202 for a new request (store.lock held): a dry run validates only; a real one starts an operation."""
    request_id = str(uuid.uuid4())
    data: dict[str, Any] = {"requestId": request_id, "accountId": account, "status": "submitted",
                            "message": "Partnership account data deletion request submitted to the Data Deletion API."}
    headers = {"X-Partnership-Account-Data-Deletion-Request-Id": request_id}
    if dry_run:
        data.update(dry_run=True, message="Dry run: validated, nothing submitted.")
        return Reply(202, _envelope(202, None, "accepted", data), headers)
    operation_id = str(uuid.uuid4())
    data["downstreamRequestId"] = f"delete-account-{len(store.deletions) + 1}"
    headers["X-Operation-Id"] = operation_id
    body = _envelope(202, None, "accepted", data)
    store.operations[operation_id] = {"operationId": operation_id, "accountId": account, "created_at": call.state.now(),
                                      "polls": 0, "response_body": body, "fails": account in store.failing_accounts}
    store.deletions.append({"accountId": account, "parent": parent, "requestId": request_id, "operationId": operation_id, "key": key})
    return Reply(202, body, headers, acted=True)


@guarded(_refused)
def operation(call: Call) -> Reply:
    store = _store(call)
    with store.lock:
        found = store.operations.get(call.params["operation_id"])
        if found is None:
            return Reply(404, _envelope(404, "NOT_FOUND", "operation not found"))
        found["polls"] += 1
        data = {"operationId": found["operationId"], "type": "ACCOUNT_DATA_DELETION", "accountId": found["accountId"]}
        if found["polls"] <= store.operation_running_polls:
            data["status"] = "pending" if found["polls"] == 1 else "in_progress"
        elif found["fails"]:
            data |= {"status": "failed", "error": {"error": "DOWNSTREAM_REJECTED", "message": "the deletion was refused"}}
        else:
            data |= {"status": "completed", "response_body": found["response_body"]}
    return Reply(200, _envelope(200, None, "ok", data))


ROUTES: list[Route] = [
    route("POST", "/api/v1/oauth/token", "partnerships_auth", token),
    route("POST", "/v1/partnership/network-privacy-requests", "network_privacy", network_privacy,
          principal=_principal, shape=enveloped),
    route("POST", "/v1/partnership/accounts/(?P<account_id>[^/]+)/data-deletion-requests", "account_deletion",
          account_deletion, principal=_principal, shape=enveloped),
    route("GET", "/v1/partnership/operations/(?P<operation_id>[^/]+)", "partnership_operations", operation,
          principal=_principal, shape=enveloped),
]
# Published: per partner credential, shared by every machine using it.
FAMILY_LIMITS = {
    "network_privacy": FamilyLimits(requests_per_minute=10, concurrency=4),
    "account_deletion": FamilyLimits(requests_per_minute=10, concurrency=4),
    "partnership_operations": FamilyLimits(requests_per_minute=600, concurrency=8),
}
EXTENSIONS = {"partnerships": PartnershipStore}
