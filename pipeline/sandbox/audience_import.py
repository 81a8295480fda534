"""Custom Audience Import API, v3 and legacy, with the documented contract enforced [contract section 1]."""

from __future__ import annotations

import base64
import json
import re

from pipeline.sandbox.routes import Call, Reply, Route, error_reply, route
from pipeline.sandbox.state import FamilyLimits

LIMITS = FamilyLimits(requests_per_second=4, concurrency=4)
MAX_IDENTIFIERS = 100_000
_HEX = re.compile(r"^[0-9a-f]{64}$")
_IDENTIFIER_KEYS = ("email", "emails", "sha256", "sha256s")
_ALLOWED_KEYS = {"accountId", "action", "list", *_IDENTIFIER_KEYS}


def _v3_authorised(call: Call) -> bool:
    header = call.header("Authorization") or ""
    if not header.startswith("Basic "):
        return False
    try:
        public, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = call.state.credentials
    return public == expected.public_key and secret == expected.secret_key


def _legacy_authorised(call: Call) -> bool:
    return call.header("Authorization") == call.state.credentials.legacy_api_key


def _handle(call: Call, family: str, authorised, account_required: bool) -> Reply:
    if not authorised(call):
        return error_reply(401, "Unauthorized")
    if "application/json" not in (call.header("Content-Type") or ""):
        return error_reply(400, "Content-Type must be application/json")
    try:
        body = json.loads(call.body)
    except ValueError:
        return error_reply(400, "body is not JSON")
    if not isinstance(body, dict):
        return error_reply(400, "body must be a JSON object")
    unknown = set(body) - _ALLOWED_KEYS
    if unknown:
        return error_reply(400, f"unknown fields: {sorted(unknown)}")
    if account_required and not (isinstance(body.get("accountId"), str) and body["accountId"]):
        return error_reply(400, "accountId is required")
    if body.get("action") not in ("include", "exclude"):
        return error_reply(400, "action must be include or exclude")
    if "list" in body and not (isinstance(body["list"], str) and body["list"]):
        return error_reply(400, "list must be a non-empty string")
    present = [key for key in _IDENTIFIER_KEYS if key in body]
    if len(present) != 1:
        return error_reply(400, "exactly one of email, emails, sha256, sha256s is required")
    key = present[0]
    values = body[key] if key.endswith("s") else [body[key]]
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        return error_reply(400, f"{key} must be {'a non-empty array of strings' if key.endswith('s') else 'a string'}")
    if len(values) > MAX_IDENTIFIERS:
        return error_reply(400, f"more than {MAX_IDENTIFIERS} identifiers in one request")
    if key.startswith("sha256") and not all(_HEX.match(v) for v in values):
        return error_reply(400, f"{key} must hold 64-character lowercase hex SHA-256 hashes")
    if key.startswith("email") and not all("@" in v and v == v.strip() for v in values):
        return error_reply(400, f"{key} must hold email addresses")
    call.state.record_received({
        "family": family, "account_id": body.get("accountId"), "action": body["action"],
        "list": body.get("list", "AdvertiserDatabase"), "key": key, "count": len(values), "identifiers": values,
    })
    return Reply(201, "Created", acted=True)


def v3(call: Call) -> Reply:
    return _handle(call, "audience_import", _v3_authorised, account_required=True)


def legacy(call: Call) -> Reply:
    return _handle(call, "audience_import_legacy", _legacy_authorised, account_required=False)


ROUTES: list[Route] = [
    route("POST", "/v3/import/suppression", "audience_import", v3),
    route("POST", "/api/1.0/import/suppression", "audience_import_legacy", legacy),
]
FAMILY_LIMITS = {"audience_import": LIMITS, "audience_import_legacy": LIMITS}
EXTENSIONS: dict = {}
