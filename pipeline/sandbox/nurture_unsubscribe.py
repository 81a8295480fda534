"""Nurture Unsubscribe API [contract section 3]: exactly {"email": "<raw email>"}, answered 201 {"id": uuid}."""

from __future__ import annotations

import json
import uuid

from pipeline.sandbox.routes import Call, Reply, Route, error_reply, route
from pipeline.sandbox.state import FamilyLimits

# Not documented; the sandbox enforces the connector's conservative defaults (raise them via /_sandbox/limits).
LIMITS = FamilyLimits(requests_per_second=50, concurrency=8)


def unsubscribe(call: Call) -> Reply:
    if call.header("Authorization") != call.state.credentials.webhook_api_key:
        return error_reply(401, "Unauthorized")
    if "application/json" not in (call.header("Content-Type") or ""):
        return error_reply(400, "Content-Type must be application/json")
    accept = call.header("Accept") or ""
    if "application/json" not in accept and "*/*" not in accept:
        return error_reply(400, "Accept must be application/json or */*")
    try:
        body = json.loads(call.body)
    except ValueError:
        return error_reply(400, "body is not JSON")
    if not isinstance(body, dict) or set(body) != {"email"} or not isinstance(body["email"], str) or "@" not in body["email"]:
        return error_reply(400, "the body must be exactly {\"email\": \"<address>\"}")
    request_id = str(uuid.uuid4())
    call.state.record_received({"family": "nurture_unsubscribe", "id": request_id, "key": "email", "count": 1,
                                "identifiers": [body["email"]]})
    return Reply(201, {"id": request_id}, acted=True)


ROUTES: list[Route] = [route("POST", "/1.0/nurture/unsubscribe", "nurture_unsubscribe", unsubscribe)]
FAMILY_LIMITS = {"nurture_unsubscribe": LIMITS}
EXTENSIONS: dict = {}
