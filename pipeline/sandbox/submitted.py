"""What a request submitted, named the way the client's manifest names it.

Every attempt the sandbox records carries its batch's `digest` (SHA-256 of the identifiers joined by newlines, in
the order sent) or its one-subject request's `subject` (hex SHA-256 of the identifier), so a test can join each
attempt, and the fault it met, to exactly one manifest line. A 400 answer echoes the identifiers it refused, as
real APIs do, so a client that copies error bodies into its records or logs is caught leaking them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from pipeline.sandbox.routes import Call

_BATCH_KEYS = ("emails", "sha256s", "rawEmails", "sha256Emails")
_SUBJECT_KEYS = ("email", "phone", "sha256Email", "sha256")
_ECHOED = 20  # identifiers quoted in one 400 answer


def _body(call: Call) -> Any:
    try:
        return json.loads(call.body) if call.body else None
    except ValueError:
        return None


def submitted_identifiers(call: Call) -> list[str]:
    """The identifiers a request carried, as sent (the account, for an account deletion)."""
    if "account_id" in call.params:
        return [call.params["account_id"]]
    body = _body(call)
    if not isinstance(body, dict):
        return []
    for key in _BATCH_KEYS:
        if isinstance(body.get(key), list):
            return [str(value) for value in body[key]]
    return [str(body[key]) for key in _SUBJECT_KEYS if isinstance(body.get(key), str)]


def attempt_key(call: Call) -> dict[str, str]:
    """{"digest": …} for a batch, {"subject": …} for a one-subject request, {} for anything else (reads)."""
    if call.method != "POST":
        return {}
    if "account_id" in call.params:
        return {"subject": _sha256_hex(call.params["account_id"])}
    body = _body(call)
    if not isinstance(body, dict):
        return {}
    for key in _BATCH_KEYS:
        if isinstance(body.get(key), list):
            return {"digest": _sha256_hex("\n".join(str(value) for value in body[key]))}
    if isinstance(body.get("sha256Email"), str):
        try:
            return {"subject": base64.b64decode(body["sha256Email"], validate=True).hex()}
        except (binascii.Error, ValueError):
            return {}
    for key in ("email", "phone", "sha256"):
        if isinstance(body.get(key), str):
            return {"subject": body[key] if key == "sha256" else _sha256_hex(body[key])}
    return {}


def echo_refused_input(body: Any, call: Call) -> Any:
    """A 400 answer's body with the request's identifiers quoted in its message, as real APIs quote bad input."""
    identifiers = submitted_identifiers(call)[:_ECHOED]
    if not identifiers or not isinstance(body, dict):
        return body
    quoted = f" (input: {', '.join(identifiers)})"
    if isinstance(body.get("message"), str):
        return {**body, "message": body["message"] + quoted}
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {**body, "error": {**error, "message": error["message"] + quoted}}
    if isinstance(error, str):
        return {**body, "error": error + quoted}
    return {**body, "message": quoted.strip()}


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
