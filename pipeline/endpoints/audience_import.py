"""Custom Audience Import API, v3 and legacy [contract section 1].

Include/exclude of the same identifiers is idempotent, so a retried batch is safe. Success is 201 with no
ID in the answer, so `ids` stays empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.batching import Batch
from pipeline.config import AudienceImportDestination, AudienceImportLegacyDestination
from pipeline.endpoints.base import EndpointBase, EndpointSpec, HttpRequest, raise_for_status
from pipeline.http.auth import basic_key_pair, raw_api_key

if TYPE_CHECKING:
    import requests

V3_PATH = "/v3/import/suppression"
LEGACY_PATH = "/api/1.0/import/suppression"

_HINTS = {
    400: "the API rejected the request's format",
    401: "check the credentials in destination.credentials",
    403: "the credentials are not allowed to write to this account",
    413: "the batch is too large; lower destination.limits.batch_size",
}


class AudienceImport(EndpointBase):
    def __init__(self, destination: AudienceImportDestination | AudienceImportLegacyDestination, identifier_role: str):
        self.destination = destination
        legacy = isinstance(destination, AudienceImportLegacyDestination)
        self.spec = EndpointSpec(
            family=destination.endpoint,
            retry_safe=True,
            wire_encoding="email" if destination.send == "email" else "hex",
            identifier_role=identifier_role,
            limits=destination.effective_limits,
            status_hints=_HINTS,
        )
        self._url = destination.url + (LEGACY_PATH if legacy else V3_PATH)
        credentials = destination.credentials
        auth = raw_api_key(credentials.api_key) if legacy else basic_key_pair(credentials.public_key, credentials.secret_key)
        self._headers = {**auth, "Content-Type": "application/json", "Accept": "application/json"}
        self._identifier_key = "emails" if destination.send == "email" else "sha256s"

    def action(self, batch: Batch) -> str:
        """The job's action, unless the batch carries its own (mirror sends include and exclude batches)."""
        return (batch.attributes or {}).get("action", self.destination.action)

    def build_request(self, batch: Batch) -> HttpRequest:
        body: dict[str, object] = {"action": self.action(batch)}
        if self.destination.account_id is not None:
            body["accountId"] = self.destination.account_id
        if self.destination.list_name is not None:
            body["list"] = self.destination.list_name
        body[self._identifier_key] = batch.json_identifiers  # encoded once (http/json_body.py)
        return HttpRequest("POST", self._url, self._headers, json=body)

    def manifest_fields(self, batch: Batch) -> dict[str, Any]:
        return {"action": self.action(batch)}

    def read_response(self, response: requests.Response) -> dict[str, str]:
        raise_for_status(response, self.spec)
        return {}
