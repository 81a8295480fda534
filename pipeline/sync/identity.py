"""Which destination a sync state belongs to, and the hashed identifier the state records per request.

A state is only valid for the place it describes: the same list in another account, on another base URL
(the sandbox instead of production) or with another action is a different destination with its own state.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

from pipeline.batching import WIRE
from pipeline.config import JobConfig
from pipeline.endpoints.base import EndpointSpec
from pipeline.prepare.hashing import base64_to_hex, sha256_hex

HASHED_IDENTIFIER = "hashed_identifier"
AUDIENCE_DEFAULT_LIST = "AdvertiserDatabase"  # what the audience API uses when a request names no list

# Destination settings that change where requests land or what they do; everything else (limits, retries,
# credentials) can change between runs without starting a new state.
_IDENTITY_FIELDS = ("account_id", "parent_account_id", "list_name", "action", "dry_run")


def destination_key(job: JobConfig) -> dict[str, Any]:
    destination = job.destination
    mirror = destination.sync_mode == "mirror"
    key: dict[str, Any] = {"endpoint": destination.endpoint, "base_url": destination.url, "sync_mode": destination.sync_mode}
    for name in _IDENTITY_FIELDS:
        if not hasattr(destination, name) or (mirror and name == "action"):  # mirror sends both actions to one list
            continue
        value = getattr(destination, name)
        if name == "list_name":
            key["list"] = value or AUDIENCE_DEFAULT_LIST
        else:
            key[name] = value
    return key


def key_name(key: dict[str, Any]) -> str:
    """A folder name for the key: the endpoint, for people, and 16 hex characters of its hash, for uniqueness."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key['endpoint']}-{digest}"


def hashed_identifier(spec: EndpointSpec) -> pl.Expr:
    """What the state keeps for a request row: its wire identifier when that is already a hash, else a hash of it.

    Raw emails (send: email, unsubscribe) become their hex SHA-256, which is also what sha256 mode sends, so
    switching `send` keeps the state valid; base64 digests (deletion) become hex likewise. Network privacy's
    wire identifier is already `REQUEST_TYPE:<hex SHA-256>` and is kept as it is.
    """
    if spec.wire_encoding == "email":
        return sha256_hex(pl.col(WIRE))
    if spec.wire_encoding == "base64":
        return base64_to_hex(pl.col(WIRE))
    return pl.col(WIRE)
